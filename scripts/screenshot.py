"""Screenshot of the demo's leaderboard page for the docs (docs/leaderboard.png).

Starts `delbench demo` in a scratch folder (which queues the baseline rows), waits until they are on the
board, then photographs the page with headless Chromium (Debian's /usr/bin/chromium via Playwright).
Re-run it after a change to the page:

    .venv/bin/python scripts/screenshot.py                    # synth-tiny: three baseline rows, 5-10 minutes on 2 CPU cores
    .venv/bin/python scripts/screenshot.py --tier tests/tiers/micro.json --pool-size 480   # seconds, toy numbers
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.demo import DEMO_BASELINES  # noqa: E402

CHROMIUM = "/usr/bin/chromium"  # Debian's, as scripts/chromium.sh installs it
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def board_rows(url: str) -> list[dict]:
    try:
        with urllib.request.urlopen(f"{url}/api/v1/phases/demo/leaderboard", timeout=5) as r:
            return json.load(r)["rows"]
    except OSError:
        return []


def shoot(url: str, out: Path, width: int = 1360, chromium: str = CHROMIUM) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": 900}, device_scale_factor=1)
        page.goto(url)
        page.screenshot(path=str(out), full_page=True)
        browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "leaderboard.png")
    parser.add_argument("--tier", default="synth-tiny")
    parser.add_argument("--pool-size", type=int, default=4800)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the baseline rows")
    args = parser.parse_args()

    # Chromium first (installed as for the browser tests), so a machine without it fails before the demo's
    # minutes of evaluation, not after.
    subprocess.run(["bash", str(REPO / "scripts" / "chromium.sh")], check=False)
    if not Path(CHROMIUM).is_file():
        print(
            f"screenshot: no Chromium at {CHROMIUM} (scripts/chromium.sh could not install it)",
            file=sys.stderr,
        )
        return 1

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="delbench-shot-") as tmp:
        cmd = [sys.executable, "-m", "delbench", "demo", "--port", str(port), "--data-dir", f"{tmp}/demo",
               "--tier", args.tier, "--pool-size", str(args.pool_size)]  # fmt: skip
        log = open(Path(tmp) / "demo.log", "wb")  # noqa: SIM115
        demo = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + args.timeout
            while len(rows := board_rows(url)) < len(DEMO_BASELINES):
                if demo.poll() is not None or time.monotonic() > deadline:
                    print((Path(tmp) / "demo.log").read_text()[-3000:], file=sys.stderr)
                    print("screenshot: the demo's baseline rows did not appear", file=sys.stderr)
                    return 1
                time.sleep(2)  # poll interval while the baselines are evaluated
            shoot(f"{url}/phases/demo", args.out)
            print(f"screenshot: {args.out} ({len(rows)} rows)")
        finally:
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(timeout=60)
            except subprocess.TimeoutExpired:
                demo.kill()
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
