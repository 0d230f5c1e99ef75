"""`python -m tender.simulator --port N ...`"""

from __future__ import annotations

import typer

from tender.simulator.command import simulator_command


def main() -> None:
    typer.run(simulator_command)


if __name__ == "__main__":
    main()
