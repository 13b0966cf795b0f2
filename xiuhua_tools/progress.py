"""Progress of a long operator command: a bar on a terminal (rich), the plain lines it printed before elsewhere.

A log file or CI keeps one line per step, as it always had: a bar redrawn in place is noise there.
"""

from __future__ import annotations

import sys
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


class Steps:
    """A command made of steps (phases, scenarios, streams), each perhaps counting items towards a total.

    `step(text)` starts the next step; `count(done, total)` says how far the current one is. On a terminal the
    steps' lines scroll above one bar; elsewhere `step` prints its line (prefixed by `prefix`) and `count` nothing,
    so that a log keeps one line per step."""

    def __init__(
        self,
        title: str,
        total: int | None = None,
        *,
        console: Console | None = None,
        prefix: str = "· ",
    ) -> None:
        self.title = title
        self.total = total
        self.console = console or Console(stderr=True, highlight=False)
        self.live = self.console.is_terminal
        self.prefix = prefix
        self.steps = 0
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> Steps:
        if self.live:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.title, total=self.total)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def step(self, text: str, *, total: int | None = None) -> None:
        """The next step begins (`total`: the items it will count, when known)."""
        self.steps += 1
        self.note(text)
        if self._progress is None or self._task is None:
            return
        # The bar names the step by what comes before its details ("fixed rate: 50 reports/s for 10s"): the line
        # above it has them.
        described = f"{self.title}: {text.split(':', 1)[0].strip('… ')}"
        if total is not None:  # a step with items of its own: the bar counts them
            self._progress.update(self._task, description=described, total=total, completed=0)
        else:
            self._progress.update(self._task, description=described, completed=self.steps - 1)

    def note(self, text: str) -> None:
        """A line within the current step (printed above the bar, or as it is)."""
        if self._progress is None:
            print(f"{self.prefix}{text}", file=sys.stderr if self.console.stderr else sys.stdout, flush=True)
        else:
            self._progress.console.print(f"{self.prefix}{text}")

    def count(self, done: int, total: int | None = None, text: str | None = None) -> None:
        """How many items the current step (or the command, with no steps) has done, of `total` if known."""
        if self._progress is None or self._task is None:
            return
        fields: dict[str, object] = {"completed": done}
        if total is not None:
            fields["total"] = total
        if text is not None:
            fields["description"] = f"{self.title}: {text}"
        self._progress.update(self._task, **fields)  # type: ignore[arg-type]
