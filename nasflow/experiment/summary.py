"""How a run ended, in words a user acts on: counts, the best model, and why trials failed.

Built from the store's SQL and JSON columns only (never a pickle), so the end of a run, ``nasflow
resume`` and ``nasflow run`` (which exits non-zero when no trial succeeded) all say the same thing.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

from nasflow.runtime.metric import metric_number

from .store import ExperimentStore, ModelRecord, rank_trained

__all__ = ["RunSummary", "failure_reason", "finished_runs", "record_run", "summarize"]

_FINISHED: list[RunSummary] = []  # runs that ended in this process, for `nasflow run`'s exit status


def failure_reason(error: str | None) -> str:
    """The line of an error that says what went wrong: a traceback's last line."""
    lines = [line.strip() for line in (error or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no reason recorded"


@dataclass(frozen=True)
class RunSummary:
    """Counts by outcome, the best model, and the most common failure with an example log."""

    experiment_id: str
    status: str
    trained: int
    failed: int
    interrupted: int
    total: int
    best: ModelRecord | None
    common_failure: tuple[str, int, str | None] | None  # reason, how many failed so, one trial's log

    @property
    def succeeded(self) -> bool:
        return self.trained > 0

    def text(self) -> str:
        lines = [f"Experiment {self.experiment_id} {self.status}: {self.trained} trained, {self.failed} failed, "
                 f"{self.interrupted} interrupted, of {self.total} models."]
        if self.best is not None:
            lines.append(f"Best: model {self.best.model_id}, metric {metric_number(self.best.metrics.final):.6g}, "
                         f"sample {json.dumps(self.best.sample)}")
        elif self.common_failure is not None:
            reason, count, log = self.common_failure
            where = f" (log: {log})" if log else ""
            lines.append(f"No trial succeeded; most common failure ({count} of {self.failed}): {reason}{where}")
        if self.status == "stopped":
            lines.append(f"Resume it with `nasflow resume {self.experiment_id}`.")
        return "\n".join(lines)


def summarize(store: ExperimentStore) -> RunSummary:
    """The summary of a store, from its JSON and SQL columns only."""
    experiment, records = store.experiment(), store.models(include_payload=False)
    failed = [r for r in records if r.status == "failed"]
    reasons = Counter(failure_reason(r.error) for r in failed)
    common = None
    if reasons:
        reason, count = reasons.most_common(1)[0]
        log = next((r.log_path for r in failed if r.log_path and failure_reason(r.error) == reason), None)
        common = (reason, count, log)
    return RunSummary(experiment.experiment_id, experiment.status, sum(r.status == "trained" for r in records),
                      len(failed), sum(r.status == "interrupted" for r in records), len(records),
                      next(iter(rank_trained(records, store.metric_direction())), None), common)


def record_run(summary: RunSummary) -> None:
    _FINISHED.append(summary)


def finished_runs() -> list[RunSummary]:
    """Summaries of the runs that ended in this process, oldest first."""
    return list(_FINISHED)
