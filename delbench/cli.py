"""The `delbench` command: a table of subcommands, each imported only when it runs.

Light commands (`--help`, `normdel`) must answer in well under a second, so nothing here imports torch,
the web stack or the database; each subcommand's module builds its own argument parser in `main(argv)`.

Exit codes, for every command: 0 done, 2 a usage error (argparse's `parser.error`, an unknown command),
1 a runtime error (a file that does not load, a server that refuses). A command reports a runtime error
by raising `SystemExit("what went wrong")`; this module prints it once as `delbench COMMAND: error: ...`,
the prefix argparse gives a usage error.
"""

from __future__ import annotations

import importlib
import sys

from evaluator.cpu_threads import set_default_wait_policy

# name -> (module with a `main(argv) -> int`, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("evaluator.cli", "generate the synthetic DataDEL pool and its eight downstream tasks"),
    "evaluate": ("evaluator.cli", "run the fixed protocol on a selection: MAE pretraining + eight finetunes"),
    "pretrain": ("evaluator.cli", "the pretraining stage alone, on one or (under torchrun) several ranks"),
    "normdel": ("evaluator.cli", "print NormDEL for an mIoU and a retained fraction"),
    "tiers": ("evaluator.cli", "list the protocol tiers with their hashes"),
    "ingest": (
        "evaluator.ingest.cli",
        "turn a real dataset download (pool source or downstream task) into a store",
    ),
    "verify": (
        "evaluator.ingest.cli",
        "check a pool or tasks folder and re-hash the files it was ingested from",
    ),
    "embed": (
        "evaluator.baselines.cli",
        "embed every pool image with the tier's full-pool MAE encoder (cached)",
    ),
    "select": (
        "evaluator.baselines.cli",
        "pick a subset with a baseline: random, meddel, semdedup, hard, prototype",
    ),
    "baselines": ("evaluator.baselines.cli", "evaluate every baseline at several ratios; write the table"),
    "demo": (
        "app.demo",
        "run the whole server on embedded defaults: API, worker, synthetic pool, a demo phase",
    ),
    "serve": ("app.cli", "serve the API (migrates the database first)"),
    "admin": ("app.admin_cli", "organizer bootstrap: create teams (printing their token), tokens and phases"),
    "submit": ("delbench.client", "upload a selection to a phase and follow its evaluation (participants)"),
    "status": ("delbench.client", "show a submission, or list your team's submissions"),
    "cancel": ("delbench.client", "withdraw one of your team's queued or running submissions"),
    "leaderboard": ("delbench.client", "print a phase's leaderboard"),
    "worker": ("worker.cli", "run an evaluation worker (Celery) for the gpu and light queues"),
}


# the extra each command's package needs (the base install is the participant client alone)
EXTRAS = {"evaluator": "evaluator", "app": "server", "worker": "server,evaluator", "delbench": ""}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: delbench COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `delbench COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"delbench: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    set_default_wait_policy()  # before torch loads: evaluator/cpu_threads.py
    try:  # commands import their libraries when they run, so a missing one shows up here
        return int(importlib.import_module(COMMANDS[name][0]).main(name, rest) or 0)
    except SystemExit as exc:
        if isinstance(exc.code, str):  # a command's runtime error: one line, argparse's prefix
            print(f"delbench {name}: error: {exc.code}", file=sys.stderr)
            return 1
        return exc.code or 0  # argparse's 2 after its usage line, or --help's 0
    except ModuleNotFoundError as exc:  # an install without this command's libraries: say which, no traceback
        hint = f"pip install 'delbench[{EXTRAS.get(COMMANDS[name][0].split('.')[0], 'evaluator')}]'"
        print(f"delbench {name}: error: needs the Python package {exc.name or str(exc)!r}, which is not installed: {hint}",
              file=sys.stderr)  # fmt: skip
        return 1
