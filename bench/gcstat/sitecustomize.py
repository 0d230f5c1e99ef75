"""Time spent in Python's garbage collector, per process (bench/README.md, "Third round").

Put this folder first on PYTHONPATH of the processes to measure (`tender up` passes its environment on):
    PYTHONPATH=bench/gcstat .venv/bin/python bench/run.py --no-baseline
Every 5 s each Python process appends to $GCSTAT_DIR/<pid> (default /tmp/tender-gcstat): its command, CPU time,
the collector's wall time and collection count per generation, objects tracked and RSS. GC_THRESHOLD="a,b,c"
overrides the thresholds.
"""

import gc
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

_OUT = Path(os.environ.get("GCSTAT_DIR") or Path(tempfile.gettempdir()) / "tender-gcstat")
_started: dict[int, float] = {}
_seconds = [0.0, 0.0, 0.0]
_counts = [0, 0, 0]


def _timed(phase: str, info: dict[str, int]) -> None:
    generation = info["generation"]
    if phase == "start":
        _started[generation] = time.perf_counter()
    else:
        _seconds[generation] += time.perf_counter() - _started.get(generation, time.perf_counter())
        _counts[generation] += 1


def _report() -> None:
    _OUT.mkdir(exist_ok=True)
    while True:
        time.sleep(5)
        rss_mb = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20
        line = (
            f"{time.strftime('%H:%M:%S')}|{' '.join(sys.argv[:3])[-40:]}|cpu={time.process_time():.2f}"
            f"|gc_seconds={[round(s, 2) for s in _seconds]}|collections={_counts}|objects={len(gc.get_objects())}"
            f"|rss_mb={rss_mb}\n"
        )
        with (_OUT / str(os.getpid())).open("a") as f:
            f.write(line)


gc.callbacks.append(_timed)
if os.environ.get("GC_THRESHOLD"):
    gc.set_threshold(*map(int, os.environ["GC_THRESHOLD"].split(",")))
threading.Thread(target=_report, daemon=True, name="gcstat").start()
