"""A live line on the terminal while an experiment runs: trials done / running / failed, best metric."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nasflow.execution import ModelEvent, TrainingEndEvent, TrainingStartEvent
from nasflow.space import ExecutableModelSpace, ModelStatus

__all__ = ["ProgressDisplay"]

_logger = logging.getLogger(__name__)


class ProgressDisplay:
    """Counts model events; draws a rich progress bar on a terminal, logs a line per model elsewhere."""

    def __init__(self, total: int | None, restored: Iterable[ExecutableModelSpace] = ()) -> None:
        restored = list(restored)
        self.total = total
        self.done = sum(1 for m in restored if m.status == ModelStatus.Trained)
        self.failed = sum(1 for m in restored if m.status in (ModelStatus.Failed, ModelStatus.Interrupted))
        self.running = 0
        self.best: ExecutableModelSpace | None = None  # the best trained model (by score) so far
        for model in restored:
            self._consider(model)
        self._console = Console(file=sys.stderr)
        self._progress: Progress | None = None
        self._task = None

    def _consider(self, model: ExecutableModelSpace) -> None:
        score = model.score
        if score is not None and (self.best is None or score > self.best.score):  # type: ignore[operator]
            self.best = model

    def start(self) -> None:
        if not self._console.is_terminal:
            return
        self._progress = Progress(TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                                  console=self._console, transient=False)
        self._task = self._progress.add_task("trials", total=self.total, completed=self.finished,
                                             status=self._status())
        self._progress.start()

    @property
    def finished(self) -> int:
        return self.done + self.failed

    def _status(self) -> str:
        best = "-" if self.best is None else f"{self.best.metric:.4g}"
        return f"running {self.running}  failed {self.failed}  best {best}"

    def on_event(self, event: ModelEvent) -> None:
        if isinstance(event, TrainingStartEvent):
            self.running += 1
        elif isinstance(event, TrainingEndEvent):
            self.running = max(0, self.running - 1)
            if event.status == ModelStatus.Trained:
                self.done += 1
                self._consider(event.model)
            else:
                self.failed += 1
            if self._progress is None:
                _logger.info("model %s %s (metric %s) | %s", event.model.model_id, event.status.value,
                             event.model.metric, self._status())
        else:
            return
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=self.finished, status=self._status())

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
