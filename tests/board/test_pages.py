"""The server-rendered pages, in-process: board rows and chart points, the submission page, downloads,
sign-in, and the chart's geometry."""

from __future__ import annotations

import csv
import io
import math
import re

import pytest

from app.models import Submission, Visibility
from app.web.chart import build, iso_miou, pareto_front
from evaluator.metrics import normdel
from tests.board.conftest import add_team, finish, submit
from tests.server.conftest import seed_phase

embedded_only = pytest.mark.parametrize("stack", ["embedded"], indirect=True)  # page logic is stack-agnostic


def test_pareto_front_and_iso_curves():
    pts = [(0.05, 0.60), (0.10, 0.58), (0.10, 0.65), (1.0, 0.64), (1.0, 0.70), (0.05, 0.55)]
    assert pareto_front(pts) == [0, 2, 4]
    for c in (0.55, 0.6, 0.65):
        for r in (0.01, 0.3, 1.0):
            assert normdel(min(iso_miou(c, r), 1.0), r) == pytest.approx(c) or iso_miou(c, r) > 1
    chart = build([
        {"id": i, "label": str(i), "r": r, "miou": m, "normdel": normdel(m, r), "baseline": i == 0}
        for i, (r, m) in enumerate(pts)
    ])  # fmt: skip
    assert [p.on_front for p in chart.points] == [True, False, True, False, True, False]
    assert len(chart.iso) >= 3 and chart.front_path.startswith("M")
    xs = {p.r: p.x for p in chart.points}
    assert xs[0.05] < xs[0.10] < xs[1.0]  # log axis, increasing
    assert math.isclose(xs[1.0], chart.plot[2])


@embedded_only
def test_board_page_rows_chart_and_downloads(stack, client, pool_dir, pool_ids):
    seeded = seed_phase(stack, pool_dir, seeds=2)
    other_id, _ = add_team(stack, "team-b")
    a = submit(stack, seeded.team_id, pool_ids[:24], "tiny", description="every 20th frame")
    finish(stack, a, lambda d, s: 0.60 + 0.01 * s)
    b = submit(stack, other_id, pool_ids[:240], "half & <b>bold</b>")
    finish(stack, b, 0.75)
    running = submit(stack, other_id, pool_ids[:48], "running-one")

    html = client.get("/phases/dev").text
    ids = re.findall(r'<tr data-id="(\d+)"', html)
    # a ranks first: R = 5 % beats R = 50 % in NormDEL despite the lower mIoU
    assert ids == [str(a), str(b)]
    assert len(re.findall(r'class="point[ "]', html)) == 2 and str(running) not in re.findall(
        r'data-id="(\d+)"', html
    )
    assert "half &amp; &lt;b&gt;bold&lt;/b&gt;" in html  # escaped
    assert '60.5<span class="sd">± 0.7</span>' in html  # mean ± sample sd over the seeds (0.60, 0.61), in %
    assert f'href="/submissions/{a}"' in html

    rows = list(csv.DictReader(io.StringIO(client.get("/phases/dev/leaderboard.csv").text)))
    assert [int(r["submission_id"]) for r in rows] == [a, b] and float(rows[0]["mean_miou"]) == pytest.approx(
        0.605
    )
    assert len([k for k in rows[0] if k.startswith("miou:")]) == 8
    api_csv = client.get("/api/v1/phases/dev/leaderboard.csv")
    assert (
        api_csv.headers["content-type"].startswith("text/csv")
        and api_csv.text == client.get("/phases/dev/leaderboard.csv").text
    )
    assert client.get("/phases/dev/leaderboard.json").json()["rows"][0]["submission_id"] == a
    assert (
        client.get("/static/board.js").status_code == 200
        and client.get("/static/board.css").status_code == 200
    )
    assert client.get("/phases/nope").status_code == 404


@embedded_only
def test_submission_page_and_sign_in(stack, client, pool_dir, pool_ids):
    seeded = seed_phase(stack, pool_dir, results_visibility=Visibility.hidden)
    mine = submit(stack, seeded.team_id, pool_ids[:24], "mine", allow_selection_download=True)
    finish(stack, mine, 0.61)
    running = submit(stack, seeded.team_id, pool_ids[:48], "in-flight")
    with stack.session() as session:
        sub = session.get(Submission, running)
        sub.status, sub.current_stage, sub.progress = sub.status.running, "pretrain", 0.42

    # hidden phase, nobody signed in: neither submission exists for this viewer
    assert client.get(f"/submissions/{mine}").status_code == 404
    assert client.get(f"/submissions/{running}/status.json").status_code == 404
    assert client.get(f"/submissions/{mine}/selection.txt").status_code == 404
    bad = client.post("/login", data={"token": "dlb_wrong", "next": "/"}, follow_redirects=False)
    assert bad.status_code == 401 and "invalid" in bad.text
    r = client.post("/login", data={"token": seeded.token, "next": "//evil.example/"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"  # never off-site
    assert "httponly" in r.headers["set-cookie"].lower() and "samesite=lax" in r.headers["set-cookie"].lower()

    page = client.get(f"/submissions/{mine}").text  # the client keeps the cookie now
    assert "61.00" in page and "pretraining loss" in page.lower() and "0.1.0+test" in page
    assert ">MAE loss</text>" in page and ">optimizer step</text>" in page  # both axes labelled
    assert "<th>seed</th>" in page and "(1 evaluation)" in page  # one seed, not "seeds: 0"
    assert client.get(f"/submissions/{mine}/selection.txt").text.splitlines() == pool_ids[:24]
    assert re.findall(r'<tr data-id="(\d+)"', client.get("/phases/dev").text) == [str(mine)]
    status = client.get(f"/submissions/{running}/status.json").json()
    assert (status["status"], status["current_stage"], status["progress"]) == ("running", "pretrain", 0.42)
    assert 'id="progress"' in client.get(f"/submissions/{running}").text
    assert client.post("/logout", follow_redirects=False).status_code == 303
    client.cookies.clear()
    assert client.get(f"/submissions/{mine}").status_code == 404
