"""The server processes' garbage collector settings (tender/gc_tuning.py), checked in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

from tender.gc_tuning import THRESHOLDS


def test_a_server_process_collects_rarely_and_never_walks_what_it_built_at_start() -> None:
    code = (
        "import gc, json\n"
        "from tender.api.app import create_app\n"  # the objects of a started process: modules, the app's types
        "from tender.gc_tuning import tune_for_server\n"
        "before = gc.get_threshold()\n"
        "tune_for_server()\n"
        "print(json.dumps([before, gc.get_threshold(), gc.get_freeze_count()]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    import json

    before, after, frozen = json.loads(out)
    assert tuple(before) == (700, 10, 10)  # Python's defaults, which cost the API a fifth of its CPU
    assert tuple(after) == THRESHOLDS
    assert frozen > 10_000  # the imported modules and their objects are out of every collection
