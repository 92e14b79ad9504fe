"""`delbench submit | status | leaderboard`: the participant's command line, a thin HTTP client of the API.

The server and token come from `--server` / `--token` or `DELBENCH_SERVER` / `DELBENCH_TOKEN`. Imports
neither torch nor the server's code: it needs only httpx and tqdm.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

import httpx

DEFAULT_SERVER = "http://127.0.0.1:8000"
POLL_SECONDS = 1.0
TERMINAL = ("succeeded", "failed", "cancelled")


class ClientError(Exception):
    """A message for the user (the server's own error message where it sent one); exit status 1."""


class Unreachable(ClientError):
    """No answer from the server (refused, reset, timed out): a request that may be retried."""


UPLOAD_ATTEMPTS = 3  # an upload whose answer was lost is sent again with its Idempotency-Key


class Client:
    def __init__(self, server: str, token: str | None, timeout: float = 60.0):
        self.server = server.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(
                f"cannot reach the DELBench server at {self.server} ({type(exc).__name__}: {exc or 'no answer'}); "
                "is it running? Set --server or DELBENCH_SERVER"
            ) from None
        if response.status_code >= 400:
            raise ClientError(_error_message(response))
        return response

    def json(self, method: str, path: str, **kwargs):
        return self.request(method, path, **kwargs).json()


def _error_message(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        message = f"{error['message']} [{error['rule']}]"
    except (ValueError, KeyError, TypeError):
        message = response.text.strip()[:300] or response.reason_phrase
    return f"the server refused ({response.status_code}): {message}"


# ---------------------------------------------------------------------------------------------- output


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}"


TEXT_COLUMNS = {"team", "method", "phase", "dataset", "status", "created (UTC)"}


def _table(header: list[str], rows: list[list[str]]) -> str:
    """Plain aligned columns: text left, numbers right."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if h in TEXT_COLUMNS else str(c).rjust(w)
            for c, w, h in zip(cells, widths, header, strict=True)
        ).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def format_results(sub: dict) -> str:
    res = sub["results"]
    spread = lambda v: "" if v is None else f" ± {v * 100:.2f}"  # noqa: E731
    rows = [
        [name, _pct(d["miou"], 2) + spread(d.get("miou_std")), f"{d['normdel']:.4f}"]
        for name, d in res["datasets"].items()
    ]
    rows.append(
        ["mean", _pct(res["mean_miou"], 2) + spread(res.get("mean_miou_std")), f"{res['mean_normdel']:.4f}"]
    )
    return _table(["dataset", "mIoU (%)", "NormDEL"], rows)


def _about(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


def standing(sub: dict) -> str:
    """The server's word on a pending submission: its place in the queue while it waits, and its ETA."""
    parts = []
    if sub.get("queue_position") is not None:
        parts.append(f"place {sub['queue_position']} in the queue")
        if sub.get("starts_in_seconds") is not None:
            parts.append(f"starts in ~{_about(sub['starts_in_seconds'])}")
    if sub.get("eta_seconds") is not None:
        parts.append(f"done in ~{_about(sub['eta_seconds'])}")
    return ", ".join(parts)


def format_submission(sub: dict) -> str:
    pending = sub["status"] in ("queued", "running")
    lines = [
        f"submission {sub['id']} · phase {sub['phase']} · team {sub['team']} · method {sub['method']}",
        f"status {sub['status']}"
        + (f" · stage {sub['current_stage']} · {sub['progress'] * 100:.0f} %" if pending else "")
        + f" · n {sub['n']:,} · R {_pct(sub['retained_fraction'], 2)} %",
    ]
    if pending and standing(sub):
        lines.append(standing(sub))
    if sub.get("hidden") or sub.get("disqualified"):
        lines.append(
            f"{'disqualified' if sub['disqualified'] else 'hidden from the board'}: {sub['moderation_reason']}"
        )
    if sub["status"] == "succeeded" and sub.get("results"):
        lines += ["", format_results(sub)]
    if sub["status"] in ("failed", "cancelled"):
        lines.append(f"error: {sub['error']}")
        if sub.get("log_tail"):
            lines += ["log tail:", sub["log_tail"]]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- commands


def follow(client: Client, submission_id: int, *, poll: float = POLL_SECONDS, out=sys.stderr) -> dict:
    """Poll the submission with a progress bar until it ends; returns its final state. The bar shows the
    server's stage, progress, place in the queue and ETA, not an estimate of its own (which swings while
    a submission waits or validates)."""
    from tqdm import tqdm

    with tqdm(
        total=100, unit="%", file=out, bar_format="{desc} |{bar}| {n:.0f}%{postfix} [{elapsed}]"
    ) as bar:
        while True:
            sub = client.json("GET", f"/api/v1/submissions/{submission_id}")
            stage = (
                "waiting" if sub.get("queue_position") is not None else sub["current_stage"] or sub["status"]
            )
            bar.set_description_str(f"#{submission_id} {stage}"[:40].ljust(28))
            bar.set_postfix_str(standing(sub), refresh=False)
            bar.n = round(sub["progress"] * 100, 1)
            bar.refresh()
            if sub["status"] in TERMINAL:
                return sub
            time.sleep(poll)  # the polling interval of a user-facing follow loop


def cmd_submit(client: Client, args: argparse.Namespace) -> int:
    path = Path(args.ids_file)
    if not path.is_file():
        raise ClientError(f"{path}: no such file")
    data = {"method": args.method, "description": args.description}
    for key in ("code_url", "paper_url"):
        if getattr(args, key):
            data[key] = getattr(args, key)
    if args.allow_download:
        data["allow_selection_download"] = "true"
    # One key for every attempt: if the answer to an accepted upload is lost, the retry gets that answer
    # back instead of making a second submission (and spending quota twice).
    headers = {"Idempotency-Key": f"delbench-cli-{uuid.uuid4()}"}
    for attempt in range(1, UPLOAD_ATTEMPTS + 1):
        try:
            with path.open("rb") as f:
                accepted = client.json(
                    "POST",
                    f"/api/v1/phases/{args.phase}/submissions",
                    files={"file": (path.name, f)},
                    data=data,
                    headers=headers,
                )
            break
        except Unreachable:
            if attempt == UPLOAD_ATTEMPTS:
                raise
            time.sleep(attempt)  # back off before the retry
    sid = accepted["id"]
    for warning in accepted.get("warnings") or []:
        print(f"delbench: warning: {warning}", file=sys.stderr, flush=True)
    print(
        f"submission {sid} accepted: n {accepted['n']:,}, R {_pct(accepted['retained_fraction'], 2)} %, "
        f"selection {accepted['selection_hash'][:12]}; page {client.server}/submissions/{sid}",
        flush=True,
    )
    if args.no_follow:
        return 0
    try:
        sub = follow(client, sid, poll=args.poll)
    except KeyboardInterrupt:
        print(f"\nstopped following; the evaluation goes on: delbench status {sid}", file=sys.stderr)
        return 130
    print(format_submission(sub))
    return 0 if sub["status"] == "succeeded" else 1


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    if args.id is not None:
        print(format_submission(client.json("GET", f"/api/v1/submissions/{args.id}")))
        return 0
    params = {"phase": args.phase} if args.phase else None
    subs = client.json("GET", "/api/v1/submissions", params=params)
    if not subs:
        print("no submissions yet")
        return 0
    rows = [
        [str(s["id"]), s["phase"], s["method"][:30], s["status"],
         f"place {s['queue_position']}" if s.get("queue_position") is not None else f"{s['progress'] * 100:.0f} %",
         _pct(s["retained_fraction"], 2), f"{s['results']['mean_normdel']:.4f}" if s.get("results") else "-",
         s["created_at"][:16].replace("T", " ")]
        for s in subs
    ]  # fmt: skip
    print(_table(["id", "phase", "method", "status", "progress", "R (%)", "NormDEL", "created (UTC)"], rows))
    return 0


def cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    sub = client.json("POST", f"/api/v1/submissions/{args.id}/cancel", json={"reason": args.reason})
    print(f"submission {sub['id']} {sub['error']}")  # "cancelled: REASON"
    return 0


def cmd_leaderboard(client: Client, args: argparse.Namespace) -> int:
    if args.format == "csv":
        sys.stdout.write(client.request("GET", f"/api/v1/phases/{args.phase}/leaderboard.csv").text)
        return 0
    board = client.json("GET", f"/api/v1/phases/{args.phase}/leaderboard")
    if args.format == "json":
        import json

        print(json.dumps(board, indent=1))
        return 0
    spread = lambda v: "" if v is None else f"±{v:.4f}"  # noqa: E731
    rows = [
        [str(r["rank"]), r["team"], r["method"][:28] + (" (baseline)" if r["is_baseline"] else ""),
         _pct(r["retained_fraction"], 2), f"{r['n']:,}", f"{r['mean_normdel']:.4f}{spread(r['mean_normdel_std'])}",
         _pct(r["mean_miou"])] + [_pct(r["datasets"].get(d, {}).get("miou")) for d in board["datasets"]]
        for r in board["rows"]
    ]  # fmt: skip
    hidden = board["results_visibility"] == "hidden" and not board["published"]
    print(
        f"phase {board['phase']} · tier {board['tier']}"
        + (" · results hidden: only your own rows" if hidden else "")
    )
    if not rows:
        print("no results yet")
        return 0
    print(_table(["#", "team", "method", "R (%)", "n", "NormDEL", "mIoU"] + board["datasets"], rows))
    return 0


def _parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"delbench {command}", description=HELP[command])
    parser.add_argument("--server", default=os.environ.get("DELBENCH_SERVER", DEFAULT_SERVER),
                        help="server URL (env DELBENCH_SERVER; default %(default)s)")  # fmt: skip
    parser.add_argument(
        "--token", default=os.environ.get("DELBENCH_TOKEN"), help="team API token (env DELBENCH_TOKEN)"
    )
    if command == "submit":
        parser.add_argument(
            "ids_file", help="the selection: one pool ID per line, a JSON list, or CSV with an `id` column"
        )
        parser.add_argument("--phase", required=True)
        parser.add_argument("--method", default="unnamed", help="name on the board")
        parser.add_argument("--description", default="")
        parser.add_argument("--code-url", dest="code_url")
        parser.add_argument("--paper-url", dest="paper_url")
        parser.add_argument(
            "--allow-download", action="store_true", help="let anyone download the selection file"
        )
        parser.add_argument("--no-follow", action="store_true", help="upload and return at once")
        parser.add_argument("--poll", type=float, default=POLL_SECONDS, help="seconds between status reads")
    elif command == "status":
        parser.add_argument(
            "id", nargs="?", type=int, help="a submission ID (default: list your submissions)"
        )
        parser.add_argument("--phase", help="only this phase's submissions")
    elif command == "cancel":
        parser.add_argument("id", type=int, help="your submission's ID")
        parser.add_argument("--reason", default="", help="why (kept in the audit log)")
    else:
        parser.add_argument("--phase", required=True)
        parser.add_argument("--format", choices=["table", "csv", "json"], default="table")
    return parser


HELP = {
    "submit": "upload a selection to a phase, then follow its evaluation until it ends",
    "status": "show one submission, or list your team's submissions",
    "cancel": "withdraw one of your team's queued or running submissions (its quota slot comes back)",
    "leaderboard": "print a phase's leaderboard",
}
COMMANDS = {"submit": cmd_submit, "status": cmd_status, "cancel": cmd_cancel, "leaderboard": cmd_leaderboard}


def main(command: str, argv: list[str]) -> int:
    args = _parser(command).parse_args(argv)
    if command != "leaderboard" and not args.token:
        print(f"delbench {command}: error: no API token: pass --token or set DELBENCH_TOKEN", file=sys.stderr)
        return 2
    client = Client(args.server, args.token)
    try:
        return COMMANDS[command](client, args)
    except ClientError as exc:
        raise SystemExit(str(exc)) from None
