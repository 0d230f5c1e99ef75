"""The status codes the fuzzer saw, per operation: printed at the end of the run so that reachability
(which operations ever got past authentication and look-ups) is visible, not assumed."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field

# Answers that say the request never reached the operation's own logic.
TURNED_AWAY = frozenset({401, 403, 404, 405})


def reason(status: int, content: bytes) -> str:
    """`status code param` of an error answer (the API's error object), or just the status."""
    try:
        error = json.loads(content)["error"]
        return f"{status} {error.get('code')} {error.get('param') or ''}".strip()
    except (ValueError, KeyError, TypeError):
        return str(status)


@dataclass
class StatusTable:
    operations: list[str] = field(default_factory=list)  # every operation of the document
    seen: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    refusals: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def record(self, label: str, status: int, content: bytes) -> None:
        self.seen[label][status] += 1
        if 400 <= status < 500 and status != 405:  # 405s are the fuzzer's probes of undeclared methods
            self.refusals[label][reason(status, content)] += 1

    def reached(self, label: str) -> bool:
        return any(status not in TURNED_AWAY for status in self.seen.get(label, Counter()))

    def succeeded(self, label: str) -> bool:
        return any(200 <= status < 300 for status in self.seen.get(label, Counter()))

    def lines(self, labels: list[str]) -> list[str]:
        width = max((len(label) for label in labels), default=10)
        out = [f"{'operation':<{width}}  {'calls':>5}  {'2xx':>3}  statuses seen"]
        for label in labels:
            counts = self.seen.get(label, Counter())
            ok = "yes" if self.succeeded(label) else ("-" if self.reached(label) else "NO")
            statuses = " ".join(f"{status}x{n}" for status, n in sorted(counts.items())) or "(not called)"
            out.append(f"{label:<{width}}  {sum(counts.values()):>5}  {ok:>3}  {statuses}")
            if counts and not self.succeeded(label):  # why not: the commonest refusals
                common = ", ".join(f"{r} x{n}" for r, n in self.refusals[label].most_common(3))
                out.append(f"{'':<{width}}  {'':>5}  {'':>3}    most often: {common}")
        return out


# One per pytest session (the terminal summary hook has no fixtures to ask).
TABLE = StatusTable()
