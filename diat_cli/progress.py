"""How long-running core functions report progress without knowing about the terminal.

The core calls a Reporter; the CLI passes a Rich implementation, tests and library users
get the silent default.
"""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    def start(self, description: str, total: int | None) -> None: ...

    def advance(self, steps: int = 1) -> None: ...

    def metrics(self, values: dict[str, float]) -> None: ...

    def problem(self, message: str) -> None: ...

    def finish(self) -> None: ...


class SilentReporter:
    """Reports nothing; problems are kept so callers can inspect them."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def start(self, description: str, total: int | None) -> None:
        pass

    def advance(self, steps: int = 1) -> None:
        pass

    def metrics(self, values: dict[str, float]) -> None:
        pass

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def finish(self) -> None:
        pass
