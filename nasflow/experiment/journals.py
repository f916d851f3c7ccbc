"""Resume's first step: record what trials reported that the experiment process did not record.

A trial journals each report before ``report_*`` returns (``nasflow.runtime.journal``); the
experiment records it when it arrives. If the experiment process dies in between, the report is
in the trial's journal only. Before resume decides what to re-run, this reads the journals of the
models the store does not show finished and records their reports: a model whose final result is
in its journal is trained with that value and does not run again.

Under the sequential engine a report is recorded before ``report_*`` returns (there is no journal):
a model still ``training`` with a final result recorded reported it, and counts as trained too.
Journals are written where the trial runs: trials on another machine (Ray, remote) keep none here.
"""

from __future__ import annotations

import logging
from pathlib import Path

from nasflow.runtime.journal import JOURNAL_NAME, JournalRecord, read_journal
from nasflow.space import ModelStatus

from .store import ExperimentStore, ModelRecord

__all__ = ["UNFINISHED", "ingest_journals"]

_logger = logging.getLogger(__name__)

_SUBMITTED = (ModelStatus.Initialized.value, ModelStatus.Frozen.value, ModelStatus.Retrying.value)
UNFINISHED = (*_SUBMITTED, ModelStatus.Training.value)  # the statuses of a model a run may leave behind
_TRIAL_PREFIX = "trial-"  # trial folders are trials/trial-<trial id>, next to trial-<trial id>.log


def ingest_journals(store: ExperimentStore, trials_dir: Path) -> list[int]:
    """Record the unrecorded reports of unfinished models; returns the ids of models now finished."""
    pending = {r.model_id: r for r in store.models(UNFINISHED, include_payload=False)}
    if not pending:
        return []
    journals = _latest_journals(trials_dir, set(pending))
    finished = []
    for model_id, record in pending.items():
        submitted = max((c.time for c in record.history if c.status in _SUBMITTED), default=record.created)
        journal = journals.get(model_id)
        if journal is not None and journal.started >= submitted:  # a journal of this attempt, not an older one
            if _ingest(store, record, journal, submitted):
                finished.append(model_id)
        elif record.status == ModelStatus.Training.value and record.metrics.final is not None:
            store.set_status(model_id, ModelStatus.Trained.value)
            finished.append(model_id)
    return finished


def _latest_journals(trials_dir: Path, model_ids: set[int]) -> dict[int, JournalRecord]:
    latest: dict[int, JournalRecord] = {}
    for path in sorted(trials_dir.glob(f"{_TRIAL_PREFIX}*/{JOURNAL_NAME}")):
        try:
            journal = read_journal(path)
        except OSError as err:
            _logger.warning("Trial journal %s cannot be read (%s); its trial's reports are not recovered.", path, err)
            continue
        if journal is None or journal.model_id not in model_ids:
            continue
        if journal.model_id not in latest or journal.started > latest[journal.model_id].started:
            latest[journal.model_id] = journal
    return latest


def _ingest(store: ExperimentStore, record: ModelRecord, journal: JournalRecord, submitted: float) -> bool:
    """Record what ``journal`` adds to the store; True if the model is now finished."""
    model_id = record.model_id
    folder = journal.path.parent
    trial_id = folder.name[len(_TRIAL_PREFIX):]
    if record.trial_id != trial_id:  # the experiment died before it recorded the trial's start
        log = folder.with_name(f"{folder.name}.log")
        store.set_trial([model_id], trial_id, log if log.exists() else None)
    recorded = store.count_intermediates(model_id, since=submitted)
    for value in journal.intermediates[recorded:]:
        store.add_intermediate(model_id, value)
    if journal.error is not None:
        if journal.final is not None:
            store.set_final(model_id, journal.final)
        store.set_status(model_id, ModelStatus.Failed.value, journal.error)
        return True
    if journal.final is not None:
        store.set_final(model_id, journal.final)
        store.set_status(model_id, ModelStatus.Trained.value)
        return True
    return False
