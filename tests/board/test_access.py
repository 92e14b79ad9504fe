"""Every route, walked with a participant's token and with none: admin routes answer 401/403, and nothing
of another team's hidden scores (nor its hidden submission) appears in any answer: JSON, CSV, pages, errors.

The detector is checked too: once the organizers publish, the same strings do appear on the public board."""

from __future__ import annotations

import re

import pytest

from app.models import Visibility
from app.web.routes import COOKIE
from app.web.routes import router as pages_router
from tests.board.conftest import add_team, auth, finish, submit
from tests.server.conftest import seed_phase

pytestmark = pytest.mark.parametrize("stack", ["embedded"], indirect=True)
SECRET_METHOD = "secret-method-of-team-b"


def secret_level(dataset: str, _seed: int) -> float:
    """Distinctive per-dataset mIoU values for team B (0.8731, 0.8742, ...)."""
    return 0.8731 + 0.0011 * sorted(LEVELS).index(dataset)


LEVELS = ["cvc-300", "cvc-clinicdb", "cvc-colondb", "etis", "imageclef-polyp", "kvasir-instrument",
          "kvasir-seg", "polypgen"]  # fmt: skip


def forms(value: float) -> set[str]:
    """Every way a page, CSV or JSON could write a score."""
    return {repr(value), f"{value:.4f}", f"{value * 100:.1f}", f"{value * 100:.2f}", f"{value:.6f}"[:7]}


def leaks(text: str, secrets: set[str]) -> list[str]:
    """The secret strings in `text`. Short forms (one decimal: "87.3") are looked for outside HTML attribute
    values, where SVG coordinates could match them by chance; the long forms (full repr, 4 decimals, as in
    `data-v` attributes) everywhere."""
    bare = re.sub(r'\s[\w:-]+="[^"]*"', " ", text)
    return [s for s in secrets if s in (bare if re.fullmatch(r"\d+\.\d", s) else text)]


def needles(stack, secret_id: int) -> set[str]:
    from app.models import Submission

    with stack.session() as session:
        sub = session.get(Submission, secret_id)
        values = [r.miou for r in sub.results] + [r.normdel for r in sub.results]
        values += [sub.mean_miou, sub.mean_normdel]
    return set().union(*(forms(v) for v in values)) | {SECRET_METHOD}


def fill(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path)


def call(client, method: str, url: str, headers: dict):
    if method in ("get", "delete"):
        return client.request(method.upper(), url, headers=headers)
    return client.request(method.upper(), url, headers=headers, json={"reason": "probe"})


def test_no_route_leaks_hidden_scores_and_admin_routes_are_closed(stack, client, pool_dir, pool_ids):
    seeded = seed_phase(stack, pool_dir, results_visibility=Visibility.hidden)
    b_id, _ = add_team(stack, "team-b")
    mine = submit(stack, seeded.team_id, pool_ids[:24], "mine")
    finish(stack, mine, 0.61)
    secret = submit(stack, b_id, pool_ids[:48], SECRET_METHOD, allow_selection_download=True)
    finish(stack, secret, secret_level)
    secret_strings = needles(stack, secret)
    ids = {"slug": "dev", "submission_id": str(secret), "name": "team-b"}

    api_paths = client.get("/openapi.json").json()["paths"]
    page_paths = [(r.path, sorted(m.lower() for m in r.methods - {"HEAD"})) for r in pages_router.routes]
    routes = [(p, list(ops)) for p, ops in api_paths.items()] + page_paths
    assert len(api_paths) >= 20 and {"/phases/{slug}", "/submissions/{submission_id}"} <= {
        p for p, _ in page_paths
    }

    viewers = {"anonymous": {}, "participant": auth(seeded.token)}
    checked = 0
    for viewer, headers in viewers.items():
        for signed_in in (False, True):  # pages read the sign-in cookie
            client.cookies.clear()
            if signed_in:
                if viewer == "anonymous":
                    continue
                client.cookies.set(COOKIE, seeded.token)
            for path, methods in routes:
                for method in methods:
                    url = fill(path, ids)
                    r = call(client, method, url, headers)
                    where = f"{viewer}{' (cookie)' if signed_in else ''}: {method.upper()} {url} -> {r.status_code}"
                    if path.startswith("/api/v1/admin"):
                        assert r.status_code in (401, 403), where
                        assert r.json()["error"]["rule"] in ("token_missing", "admin_only"), where
                    leaked = leaks(r.text, secret_strings)
                    assert not leaked, f"{where} leaks {leaked}"
                    checked += 1
    assert checked > 60
    # the viewer's own scores do come through (the walk is not looking at empty answers)
    own = client.get(f"/api/v1/submissions/{mine}", headers=auth(seeded.token)).json()
    assert own["results"]["mean_miou"] == pytest.approx(0.61)

    # the detector works: published, team B's scores are public, in exactly these forms
    from app.services.phases import get_phase

    with stack.session() as session:
        get_phase(session=session, slug="dev").published = True
    client.cookies.clear()
    public = client.get("/phases/dev").text + client.get("/phases/dev/leaderboard.csv").text
    assert SECRET_METHOD in public and len(leaks(public, secret_strings)) > 8
    assert client.get(f"/submissions/{secret}").status_code == 200
