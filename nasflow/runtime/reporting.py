"""``report_intermediate_result`` / ``report_final_result`` and the trial context behind them.

The engine (or a worker process) opens a ``trial_context`` with an ``emit`` callback; the evaluator's
report calls go to whatever context is current. This keeps evaluators ignorant of where they run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .journal import TrialJournal
from .metric import MetricValue, normalize_metric

__all__ = [
    "MetricValue", "TrialContext", "trial_context", "current_trial", "normalize_metric",
    "report_intermediate_result", "report_final_result", "clean_exit",
]

_logger = logging.getLogger(__name__)

Emit = Callable[[str, MetricValue], None]  # kind is "intermediate" or "final"


@dataclass
class TrialContext:
    """Where reports of the running trial go, and the folder its files belong in.

    ``trial_dir`` is the trial's own folder (next to its log) when the trial runs under an engine
    that gives it one; evaluators put what they write there (Lightning's logs and checkpoints)
    instead of the user's working directory. ``None`` in process (``evaluate_model``, the
    sequential engine).
    """

    emit: Emit
    model_id: str | None = None
    trial_dir: str | None = None
    final_reported: bool = False
    intermediates: list[MetricValue] = field(default_factory=list)
    journal: TrialJournal | None = None  # where reports go to disk before they are emitted (see journal.py)


_local = threading.local()


def clean_exit(err: BaseException) -> bool:
    """Whether a trial that raised ``err`` ended normally: ``sys.exit()`` or ``sys.exit(0)``."""
    return isinstance(err, SystemExit) and err.code in (None, 0)


def current_trial() -> TrialContext | None:
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None


@contextmanager
def trial_context(emit: Emit, model_id: str | None = None, trial_dir: str | None = None) -> Iterator[TrialContext]:
    """Route ``report_*`` calls made inside to ``emit`` (thread-local, nestable)."""
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    context = TrialContext(emit, model_id, trial_dir)
    stack.append(context)
    try:
        yield context
    finally:
        stack.pop()


def report_intermediate_result(metric: Any) -> None:
    """Report a per-epoch (or per-step) metric of the running trial."""
    value = normalize_metric(metric)
    context = current_trial()
    if context is None:
        _logger.info("Intermediate result (no trial running): %s", value)
        return
    context.intermediates.append(value)
    _send(context, "intermediate", value)


def report_final_result(metric: Any) -> None:
    """Report the trial's final metric; a trial reports it once."""
    value = normalize_metric(metric)
    context = current_trial()
    if context is None:
        _logger.info("Final result (no trial running): %s", value)
        return
    if context.final_reported:
        raise RuntimeError("report_final_result was called twice in one trial; report the final metric once.")
    context.final_reported = True
    _send(context, "final", value)


def _send(context: TrialContext, kind: str, value: MetricValue) -> None:
    """To the journal (on disk when this returns), then to the engine; a journal notes a failed delivery,
    which is the experiment's side going away, not a failure of the trial's code."""
    if context.journal is None:
        context.emit(kind, value)
        return
    context.journal.append(kind, value)
    try:
        context.emit(kind, value)
    except BaseException:
        context.journal.undelivered = True
        raise
