"""How torch's CPU threads wait between parallel regions; imported, and applied, before torch loads.

torch's CPU thread pool (libgomp) spins while its threads wait. Spinning forever (libgomp's ACTIVE policy)
starves the work on cores shared with other processes (the demo's API and worker, a test run, a laptop);
sleeping at once (PASSIVE) costs 1.6x on a quiet machine, since a synth-tiny step crosses hundreds of
parallel regions. A short spin (GOMP_SPINCOUNT=10000, tens of microseconds) keeps most of spinning's speed when the
cores are free (0.89x) and bounds the waste when they are not (bench/cpu_threads.py, docs/performance.md). The
numbers computed do not depend on it.
"""

from __future__ import annotations

import os

SPIN_COUNT = "10000"


def set_default_wait_policy() -> None:
    """Bound OpenMP's spinning unless the user chose a policy (OMP_WAIT_POLICY or GOMP_SPINCOUNT)."""
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
