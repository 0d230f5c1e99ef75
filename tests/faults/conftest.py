"""The fault tests' figures in pytest's final summary, shown with or without `-s`."""

from __future__ import annotations

import json
from typing import Any

from tests.support.faults import FIGURES_PROPERTY


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = []
    for category in ("passed", "failed"):
        for report in terminalreporter.stats.get(category, []):
            for name, value in getattr(report, "user_properties", []):
                if name == FIGURES_PROPERTY and getattr(report, "when", "call") == "call":
                    lines.append(f"{report.nodeid.rsplit('::', 1)[-1]} ({category}): {json.dumps(value)}")
    if lines:
        terminalreporter.section("fault test figures")
        for line in lines:
            terminalreporter.write_line(line)
