"""The pages in real headless Chromium (Debian's, driven by Playwright) against a real uvicorn server:
rows in rank order, sorting by a column, one chart point per row, and a running evaluation's progress
moving on the page as the database changes."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app.models import Submission, SubmissionStatus
from tests.board.conftest import add_team, finish, submit
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


def test_running_submission_shows_its_progress(stack, server, browser, pool_dir, pool_ids):
    seeded = seed_phase(stack, pool_dir)
    sid = submit(stack, seeded.team_id, pool_ids[:48], "in flight")

    def set_state(stage: str, progress: float) -> None:
        with stack.session() as session:
            sub = session.get(Submission, sid)
            sub.status, sub.current_stage, sub.progress = SubmissionStatus.running, stage, progress

    set_state("pretrain", 0.25)
    page = browser.new_page()
    page.goto(f"{server}/submissions/{sid}")
    assert "No submission" in page.content()  # not signed in: another team's running work is not shown
    page.goto(f"{server}/login?next=/submissions/{sid}")
    page.fill("input[name=token]", seeded.token)
    page.click("form.login button")
    page.wait_for_url(f"**/submissions/{sid}")
    assert page.eval_on_selector("#progress", "p => p.value") == pytest.approx(0.25)
    assert page.inner_text("#stage") == "pretrain"

    set_state("finetune:etis", 0.7)  # the page polls its status and moves the bar
    page.wait_for_function("document.getElementById('progress').value >= 0.69", timeout=15_000)
    assert page.inner_text("#stage") == "finetune:etis" and page.inner_text("#percent") == "70.0 %"

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
