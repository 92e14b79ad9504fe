"""Small HTTP hygiene: no formula reaches a spreadsheet from the leaderboard CSV (OWASP), a 405 says what is allowed."""

import csv
import io

from app.services.leaderboard import spreadsheet_safe


def test_formula_cells_get_a_leading_quote_and_numbers_stay_numbers():
    for cell in ('=HYPERLINK("http://x","click")', "+1+2", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        assert spreadsheet_safe(cell) == "'" + cell
    assert spreadsheet_safe("meddel 5%") == "meddel 5%"
    assert spreadsheet_safe(-0.25) == -0.25 and spreadsheet_safe(3) == 3
    out = io.StringIO()
    csv.writer(out).writerow([spreadsheet_safe('=HYPERLINK("http://evil","x")')])
    assert next(csv.reader(io.StringIO(out.getvalue())))[0].startswith("'=")


def test_method_not_allowed_says_which_methods_are(client):
    """RFC 9110: a 405 carries `Allow`; the JSON error body stays the API's."""
    r = client.delete("/api/v1/phases")
    assert r.status_code == 405 and "GET" in r.headers["allow"]
    assert r.json()["error"]["rule"] == "method_not_allowed"


def test_the_phases_link_lists_the_phases_even_when_there_is_one(stack, client, pool_dir):
    from tests.server.conftest import seed_phase

    seed_phase(stack, pool_dir)
    assert client.get("/", follow_redirects=False).status_code == 307  # a lone phase: straight to its board
    page = client.get("/phases/dev")
    assert 'href="/phases"' in page.text
    listing = client.get("/phases")
    assert listing.status_code == 200 and 'href="/phases/dev"' in listing.text


def test_my_submissions_lists_the_signed_in_teams_own(stack, client, pool_dir, pool_ids):
    from app.web.routes import COOKIE
    from tests.server.conftest import add_team, seed_phase

    seeded = seed_phase(stack, pool_dir)
    other = add_team(stack, "team-b")
    mine = client.post(
        "/api/v1/phases/dev/submissions",
        headers={"Authorization": f"Bearer {seeded.token}"},
        files={"file": ("s.txt", "\n".join(pool_ids[:24]).encode(), "text/plain")},
        data={"method": "my-method"},
    )
    assert mine.status_code == 202, mine.text
    mine = mine.json()["id"]
    theirs = client.post(
        "/api/v1/phases/dev/submissions",
        headers={"Authorization": f"Bearer {other}"},
        files={"file": ("s.txt", "\n".join(pool_ids[:30]).encode(), "text/plain")},
        data={"method": "their-method"},
    ).json()["id"]
    assert client.get("/me", follow_redirects=False).headers["location"] == "/login?next=/me"
    client.cookies.set(COOKIE, seeded.token)
    page = client.get("/me")
    assert page.status_code == 200 and f'href="/submissions/{mine}"' in page.text and "my-method" in page.text
    assert f'data-id="{theirs}"' not in page.text and "their-method" not in page.text
    assert 'href="/me"' in page.text and "queued" in page.text
