"""The pages in real headless Chromium (Debian's, driven by Playwright) against a real uvicorn server:
rows in rank order, sorting by a column, one chart point per row, and a running evaluation's progress
moving on the page as the database changes."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app.models import AuditLog, Submission, SubmissionStatus, Team
from tests.board.conftest import add_admin, add_team, beat, finish, start_pretraining, submit
from tests.server.conftest import free_port, seed_phase
from tests.server.procs import start_server

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("stack", ["embedded"], indirect=True)]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(
            "Debian's chromium is not installed at /usr/bin/chromium (scripts/chromium.sh installs it)"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (the dev extra)"
    )
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture
def server(stack, tmp_path):
    port = free_port()
    api = start_server(stack.env, port, tmp_path)
    yield f"http://127.0.0.1:{port}"
    api.stop()


def rows(page) -> list[int]:
    return [int(x) for x in page.eval_on_selector_all("#board tbody tr", "rs => rs.map(r => r.dataset.id)")]


def test_board_rank_order_sorting_and_chart(stack, server, browser, pool_dir, pool_ids):
    seeded = seed_phase(stack, pool_dir)
    b_id, _ = add_team(stack, "b-team")
    made = {}
    for team, n, level, name in [(seeded.team_id, 24, 0.55, "zeta"), (b_id, 96, 0.70, "alpha"),
                                 (seeded.team_id, 240, 0.80, "mid"), (b_id, 480, 0.85, "all")]:  # fmt: skip
        made[name] = submit(stack, team, pool_ids[:n], name)
        finish(stack, made[name], level)
    ranked = [r["submission_id"] for r in httpx.get(f"{server}/api/v1/phases/dev/leaderboard").json()["rows"]]
    page = browser.new_page()
    page.goto(f"{server}/phases/dev")
    assert rows(page) == ranked  # rank order, as the API ranks

    page.click("#board thead th:nth-child(7) button")  # mIoU (%): best first
    assert rows(page) == [made["all"], made["mid"], made["alpha"], made["zeta"]]
    assert page.get_attribute("#board thead th:nth-child(7)", "aria-sort") == "descending"
    page.click("#board thead th:nth-child(7) button")
    assert rows(page) == [made["zeta"], made["alpha"], made["mid"], made["all"]]
    page.click("#board thead th:nth-child(3) button")  # method, alphabetical
    assert rows(page) == [made["all"], made["alpha"], made["mid"], made["zeta"]]
    page.click("#board thead th:nth-child(1) button")  # back to rank
    assert rows(page) == ranked

    points = page.eval_on_selector_all("#chart a.point", "ps => ps.map(p => p.getAttribute('href'))")
    assert sorted(points) == sorted(f"/submissions/{i}" for i in ranked)  # one point per submission
    assert page.locator("#chart .iso path").count() >= 2 and page.locator("#chart path.front").count() == 1
    page.click(f'#chart a.point[data-id="{made["mid"]}"]')
    page.wait_for_url(f"**/submissions/{made['mid']}")
    assert page.locator("#per-dataset tbody tr").count() == 8
    page.close()


def sign_in(page, server: str, token: str, path: str) -> None:
    page.goto(f"{server}/login?next={path}")
    page.fill("input[name=token]", token)
    page.click("form.login button")
    page.wait_for_url(f"**{path}")


def test_running_submission_shows_its_progress(stack, server, browser, pool_dir, pool_ids):
    seeded = seed_phase(stack, pool_dir)
    sid = submit(stack, seeded.team_id, pool_ids[:48], "in flight")
    start_pretraining(stack, sid, 0.25)
    page = browser.new_page()
    page.goto(f"{server}/submissions/{sid}")
    assert "No submission" in page.content()  # not signed in: another team's running work is not shown
    sign_in(page, server, seeded.token, f"/submissions/{sid}")
    with stack.session() as session:
        shown = session.get(Submission, sid).progress
    assert page.eval_on_selector("#progress", "p => p.value") == pytest.approx(shown)
    assert page.inner_text("#summary") == f"pretrain · {shown * 100:.1f} %"

    with stack.session() as session:  # the page polls its status and moves the bar
        sub = session.get(Submission, sid)
        sub.current_stage, sub.progress = "finetune:etis", 0.7
    page.wait_for_function("document.getElementById('progress').value >= 0.69", timeout=15_000)
    assert page.inner_text("#summary") == "finetune:etis · 70.0 %"

    finish(stack, sid, 0.6)  # it ends: the page reloads with the results
    page.wait_for_selector("#per-dataset", timeout=15_000)
    assert page.inner_text("#status") == "succeeded" and page.locator("#progress").count() == 0
    page.close()


def test_api_docs_render_with_no_other_host(stack, server, browser):
    """Swagger UI at /docs draws the API's operations in Chromium while every request to another host is
    refused: its files come from this server (app/main.py), not a CDN."""
    page = browser.new_page()
    foreign: list[str] = []

    def only_this_server(route):
        if route.request.url.startswith(server):
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_server)
    page.goto(f"{server}/docs")
    page.wait_for_selector(".opblock", timeout=15_000)
    assert page.locator(".opblock").count() > 10  # one per API operation
    assert foreign == []
    page.close()


def test_queued_submission_shows_its_place_and_estimate(stack, server, browser, pool_dir, pool_ids):
    seeded = seed_phase(stack, pool_dir)
    other_id, _ = add_team(stack, "team-b")
    finish(stack, submit(stack, other_id, pool_ids[:24], "done"), 0.6)  # history for the estimate
    start_pretraining(stack, submit(stack, other_id, pool_ids[:48], "running"), 0.5)
    mine = submit(stack, seeded.team_id, pool_ids[:96], "mine")
    beat(stack, "gpu0@host")
    page = browser.new_page()
    sign_in(page, server, seeded.token, f"/submissions/{mine}")
    summary = page.inner_text("#summary")
    assert summary.startswith(
        "waiting for a GPU worker: place 1 in the queue, 1 evaluation running ahead of it"
    )
    assert "starts in about" in summary and "done in about" in summary

    page.goto(f"{server}/me")  # my submissions: the same word on the queue, with links
    assert "place 1 in the queue" in page.inner_text(f'#mine tr[data-id="{mine}"]')
    page.click(f'#mine tr[data-id="{mine}"] a[href="/submissions/{mine}"]')
    page.wait_for_url(f"**/submissions/{mine}")

    start_pretraining(stack, mine, 0.4)  # a worker takes it: the page follows
    page.wait_for_function(
        "document.getElementById('summary').textContent.startsWith('pretrain')", timeout=15_000
    )
    page.close()


def test_a_baselines_progress_is_public(stack, server, browser, pool_dir, pool_ids):
    seed_phase(stack, pool_dir)
    add_admin(stack)
    with stack.session() as session:
        organizers = session.query(Team).filter_by(name="organizers").one().id
    baseline = submit(stack, organizers, pool_ids[:48], "random 10%", is_baseline=True)
    start_pretraining(stack, baseline, 0.3)
    page = browser.new_page()  # nobody signed in
    page.goto(f"{server}/phases/dev")
    row = page.locator(f'#in-progress tr[data-pending-id="{baseline}"]')
    assert "random 10%" in row.inner_text() and "pretrain" in row.inner_text()
    row.locator("a").click()
    page.wait_for_url(f"**/submissions/{baseline}")
    assert page.inner_text("#summary").startswith("pretrain · ")
    assert page.locator("#withdraw").count() == 0  # only its own team may withdraw it
    page.close()


def test_a_participant_withdraws_their_own_submission(stack, server, browser, pool_dir, pool_ids):
    seeded = seed_phase(stack, pool_dir)
    sid = submit(stack, seeded.team_id, pool_ids[:48], "second thoughts")
    # the form posted from another site is refused, even with the team's cookie
    forged = httpx.post(
        f"{server}/submissions/{sid}/cancel", data={"reason": "x"}, cookies={"delbench_token": seeded.token},
        headers={"Origin": "https://elsewhere.example"},
    )  # fmt: skip
    assert forged.status_code == 403
    page = browser.new_page()
    sign_in(page, server, seeded.token, f"/submissions/{sid}")
    page.fill("#withdraw input[name=reason]", "wrong file")
    page.click("#withdraw button")
    page.wait_for_selector("#status.status-cancelled", timeout=15_000)
    assert "wrong file" in page.content()
    with stack.session() as session:
        assert session.get(Submission, sid).status == SubmissionStatus.cancelled
        entry = session.query(AuditLog).filter_by(target=f"submission:{sid}").one()
        assert (entry.action, entry.actor, entry.reason) == ("cancel", "team-a", "wrong file")
    page.close()


def test_a_two_seed_board_fits_1280_px(stack, server, browser, pool_dir, pool_ids):
    seeded = seed_phase(stack, pool_dir, seeds=2)
    for i, n in enumerate((24, 48, 96, 240)):
        sid = submit(stack, seeded.team_id, pool_ids[:n], f"a fairly descriptive method name {i}")
        finish(stack, sid, lambda d, seed, i=i: 0.5 + 0.01 * i + 0.0123 * seed + 0.001 * len(d))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{server}/phases/dev")
    assert page.locator("#board tbody tr").count() == 4
    assert page.locator("#board .sd").count() > 0  # the spread over seeds is shown
    wrap = page.eval_on_selector(".table-wrap", "w => [w.scrollWidth, w.clientWidth]")
    assert wrap[0] <= wrap[1], f"the board overflows its box: {wrap}"
    clipped = page.eval_on_selector_all(
        "#board td, #board th", "cs => cs.filter(c => c.scrollWidth > c.clientWidth).map(c => c.textContent)"
    )
    assert clipped == []
    page.close()


def test_best_entry_per_team(stack, server, browser, pool_dir, pool_ids):
    seeded = seed_phase(stack, pool_dir)
    b_id, _ = add_team(stack, "team-b")
    add_admin(stack)
    with stack.session() as session:
        organizers = session.query(Team).filter_by(name="organizers").one().id
    made = {}
    for team, n, level, name, baseline in [
        (seeded.team_id, 48, 0.60, "a-worse", False), (seeded.team_id, 48, 0.70, "a-best", False),
        (b_id, 96, 0.65, "b-only", False), (organizers, 48, 0.55, "random 10%", True),
        (organizers, 96, 0.58, "random 20%", True),
    ]:  # fmt: skip
        made[name] = submit(stack, team, pool_ids[:n], name, is_baseline=baseline)
        finish(stack, made[name], level)
    page = browser.new_page()
    page.goto(f"{server}/phases/dev")
    every = rows(page)
    assert len(every) == 5
    page.click("#view-best")
    page.wait_for_url("**view=best")
    best = [i for i in every if i != made["a-worse"]]  # team-a's lesser entry goes; both baselines stay
    assert rows(page) == best
    ranks = page.eval_on_selector_all("#board tbody td.rank", "cs => cs.map(c => c.textContent)")
    assert ranks == ["1", "2", "3", "4"]
    api = httpx.get(f"{server}/api/v1/phases/dev/leaderboard", params={"view": "best"}).json()
    assert [r["submission_id"] for r in api["rows"]] == best and api["view"] == "best"

    page.click(f'#board a[href="/submissions/{made["a-best"]}"]')  # its page: against random at its R
    page.wait_for_url(f"**/submissions/{made['a-best']}")
    assert "random 10%" in page.inner_text("#random-head")
    assert page.inner_text("#mean-diff") == "+15.00"
    page.close()
