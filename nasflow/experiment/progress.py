"""What the user sees while an experiment runs: a live line on a terminal (trials done / running /
failed / interrupted, best metric), and one line on stderr for every trial that fails, with its
reason and log, whether or not there is a terminal or a progress bar."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nasflow.execution import ModelEvent, TrainingEndEvent, TrainingStartEvent
from nasflow.space import ExecutableModelSpace, ModelStatus

from .summary import failure_reason

__all__ = ["ProgressDisplay"]

_logger = logging.getLogger(__name__)


class ProgressDisplay:
    """Counts model events; draws a rich progress bar when ``bar`` and on a terminal, logs a line
    per model elsewhere, and always prints a failed trial's reason and log path to stderr."""

    def __init__(self, total: int | None, restored: Iterable[ExecutableModelSpace] = (), *, bar: bool = True) -> None:
        restored = list(restored)
        self.total = total
        self.done = sum(1 for m in restored if m.status == ModelStatus.Trained)
        self.failed = sum(1 for m in restored if m.status == ModelStatus.Failed)
        self.interrupted = sum(1 for m in restored if m.status == ModelStatus.Interrupted)
        self.running = 0
        self.best: ExecutableModelSpace | None = None  # the best trained model (by score) so far
        for model in restored:
            self._consider(model)
        self._bar = bar
        self._console = Console(file=sys.stderr)
        self._progress: Progress | None = None
        self._task = None
        self._logs: dict[int | None, str] = {}  # model id -> its trial's log, from the start event

    def _consider(self, model: ExecutableModelSpace) -> None:
        score = model.score
        if score is not None and (self.best is None or score > self.best.score):  # type: ignore[operator]
            self.best = model

    def start(self) -> None:
        if not self._bar or not self._console.is_terminal:
            return
        self._progress = Progress(TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                                  console=self._console, transient=False)
        self._task = self._progress.add_task("trials", total=self.total, completed=self.finished,
                                             status=self._status())
        self._progress.start()

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.interrupted

    def _status(self) -> str:
        best = "-" if self.best is None else f"{self.best.metric:.4g}"
        return f"running {self.running}  failed {self.failed}  interrupted {self.interrupted}  best {best}"

    def say(self, text: str) -> None:
        """One message on stderr: above the bar when there is one, else a plain line."""
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=sys.stderr, flush=True)

    def on_event(self, event: ModelEvent) -> None:
        if isinstance(event, TrainingStartEvent):
            self.running += 1
            log = (event.info or {}).get("log_path")
            if log:
                self._logs[event.model.model_id] = str(log)
        elif isinstance(event, TrainingEndEvent):
            self.running = max(0, self.running - 1)
            self._count_end(event)
            if self._progress is None and _logger.isEnabledFor(logging.INFO):
                _logger.info("model %s %s (metric %s) | %s", event.model.model_id, event.status.value,
                             event.model.metric, self._status())
        else:
            return
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=self.finished, status=self._status())

    def _count_end(self, event: TrainingEndEvent) -> None:
        if event.status == ModelStatus.Trained:
            self.done += 1
            self._consider(event.model)
        elif event.status == ModelStatus.Interrupted:
            self.interrupted += 1
        else:
            self.failed += 1  # failed or invalid
            log = self._logs.pop(event.model.model_id, None)
            self.say(f"model {event.model.model_id} {event.status.value}: {failure_reason(event.error)}"
                     + (f" (log: {log})" if log else ""))

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
