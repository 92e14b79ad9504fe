"""What a result records about the code that produced it: the package version plus the git commit when
known, and the versions of the libraries that decide the numbers (torch, timm, numpy)."""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path


@lru_cache(maxsize=1)
def code_version() -> str:
    """`DELBENCH_CODE_VERSION` where the environment sets it (an image built without its .git: the
    Dockerfile bakes it in at build time), else the package version and the checkout's commit."""
    if os.environ.get("DELBENCH_CODE_VERSION"):
        return os.environ["DELBENCH_CODE_VERSION"]
    try:
        version = metadata.version("delbench")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return f"{version}+g{commit}" if commit else version


NUMERIC_LIBRARIES = ("torch", "timm", "numpy")


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    """{library: installed version} of the libraries whose numerics a result depends on."""
    found = {}
    for name in NUMERIC_LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found
