"""Rich output for the CLI: one Console for messages and progress bars (imported only by cli.py)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


class RichReporter:
    """Progress bar with a count, elapsed and remaining time; problems printed above the bar."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task = None
        self.problems: list[str] = []

    def start(self, description: str, total: int | None) -> None:
        self.finish()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(description, total=total, status="")

    def advance(self, steps: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, steps)

    def metrics(self, values: dict[str, float]) -> None:
        if self._progress is not None:
            status = "  ".join(f"{name} {value:.3g}" for name, value in values.items())
            self._progress.update(self._task, status=status)

    def problem(self, message: str) -> None:
        self.problems.append(message)
        console.print(f"[red]error:[/red] {message}", highlight=False, markup=True, soft_wrap=True)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
