"""One line naming the machine a figure was measured on: the GPU, or the CPU model, its count and torch's
threads. Timings move with the host (this project's 2-vCPU machines have been AMD EPYC and Intel Xeon ones,
and the same evaluation's time differed between them), so the benches print it beside their figures."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads"
