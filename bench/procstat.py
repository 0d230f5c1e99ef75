"""CPU time of the processes under test, read from /proc (Linux): per role, summed over a role's processes.

A role is found by what runs it: Tender's API, worker and simulator are children of `tender up` (their command
lines say `tender api|worker|simulator`), PostgreSQL is the postmaster of the run's data dir and every backend it
forked. Backends come and go (a pool reconnecting), so each sample lists the processes again and a process seen
in only one sample counts from zero (new) or until its last sample (gone).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Proc:
    pid: int
    ppid: int
    cmdline: str
    cpu_seconds: float  # user + system


def processes() -> Iterator[Proc]:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile
            continue
        # The command name in parentheses may hold spaces: the fields we need come after its closing one.
        fields = stat[stat.rindex(")") + 2 :].split()
        yield Proc(int(entry.name), int(fields[1]), cmdline, (int(fields[11]) + int(fields[12])) / TICKS)


def descendants(root: int, procs: list[Proc]) -> list[Proc]:
    children: dict[int, list[Proc]] = {}
    for p in procs:
        children.setdefault(p.ppid, []).append(p)
    found: list[Proc] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def role_of(p: Proc, data_dir: str) -> str | None:
    words = p.cmdline.split()
    if "tender" in p.cmdline and len(words) >= 3:
        for role in ("api", "worker", "simulator", "localstripe"):
            if role in words[1:4]:
                return role
    if p.cmdline.startswith("postgres") or (data_dir in p.cmdline and "postgres" in p.cmdline):
        return "postgres"
    return None


def sample(up_pid: int, data_dir: str) -> dict[int, tuple[str, float]]:
    """pid -> (role, cpu seconds) of every process of the run: `tender up`'s tree and its PostgreSQL."""
    procs = list(processes())
    tree = descendants(up_pid, procs)
    postmasters = [p for p in procs if data_dir in p.cmdline and "postgres" in p.cmdline and "-D" in p.cmdline]
    for pm in postmasters:
        tree.append(pm)
        tree.extend(descendants(pm.pid, procs))
    seen: dict[int, tuple[str, float]] = {}
    for p in tree:  # parents before their children
        role = role_of(p, data_dir) or ("postgres" if any(p.ppid == pm.pid for pm in postmasters) else None)
        if role is None and p.ppid in seen:  # uvicorn's processes of `tender api --workers N` (multiprocessing spawn)
            role = seen[p.ppid][0]
        if role is not None:
            seen[p.pid] = (role, p.cpu_seconds)
    return seen


def cpu_by_role(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds each role used between two samples (a process gone by `after` is not counted: sample often)."""
    used: dict[str, float] = {}
    for pid, (role, cpu) in after.items():
        start = before.get(pid, (role, 0.0))[1]
        used[role] = used.get(role, 0.0) + max(0.0, cpu - start)
    return used
