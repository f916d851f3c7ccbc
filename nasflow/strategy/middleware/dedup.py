"""``Deduplication``: a sample seen before is not run again."""

from __future__ import annotations

import logging
import random
from typing import Any, Literal

from nasflow.execution import FinalMetricEvent, ModelEvent, ModelEventType, TrainingEndEvent
from nasflow.space import ExecutableModelSpace, ModelStatus

from ..append_log import AppendLog
from ..utils import check_int, check_seed, rng_state, sample_key, set_rng_state
from .base import StrategyMiddleware

__all__ = ["Deduplication"]

_logger = logging.getLogger(__name__)

DedupAction = Literal["invalid", "replace", "return"]
_ACTIONS = ("invalid", "replace", "return")
_ALIASES = {"replay": "return"}  # NNI's name for "return"
_REPLACE_DRAWS = 1000


class Deduplication(StrategyMiddleware):
    """Keeps a strategy from running one sample twice; for strategies that do not dedup themselves.

    A duplicate is not run. ``action`` says what the strategy gets instead:

    - ``'invalid'``: the duplicate ends Invalid.
    - ``'replace'``: the duplicate ends Invalid, and an unseen random sample (``seed``) runs in
      its place (as a model of its own, which the strategy sees in its events).
    - ``'return'`` (NNI: ``'replay'``): the duplicate ends with the earlier model's status and
      metrics, as if it had been run (waiting for the earlier one if it is still running).

    After ``patience`` duplicates in a row the budget is reported spent, which stops a strategy
    that only proposes samples already tried. A model resubmitted as is (e.g. a retry by a
    ``FailureHandler`` above) is not a duplicate.
    """

    def __init__(self, action: DedupAction = "invalid", patience: int = 1000, seed: int | None = None) -> None:
        super().__init__()
        action = _ALIASES.get(action, action)  # type: ignore[assignment]
        if action not in _ACTIONS:
            raise ValueError(f"Deduplication: action must be one of {list(_ACTIONS)}, got {action!r}.")
        self.action: DedupAction = action
        self.patience = check_int("Deduplication", "patience", patience, 1)
        self.seed = check_seed("Deduplication", seed)
        self._rng = random.Random(seed)
        # sample key -> the earlier model's result, or None while it has not ended
        self._results: dict[str, dict[str, Any] | None] = {}
        self._changes = AppendLog()  # every [key, result] set in _results, in order: the saved state
        self._owners: dict[str, ExecutableModelSpace] = {}  # sample key -> the model that ran it here
        self._waiting: dict[str, list[ExecutableModelSpace]] = {}  # 'return' duplicates of a running model
        self._dups_in_a_row = 0
        self._warned = False

    def submit_models(self, *models: ExecutableModelSpace) -> None:
        to_run: list[ExecutableModelSpace] = []
        for model in models:
            key = sample_key(model.sample)
            resubmitted = self._owners.get(key) is model  # e.g. a retry: the same object again
            if resubmitted or key not in self._results or self._unknown(key):
                if not resubmitted:
                    self._dups_in_a_row = 0
                self._track(model, key)
                to_run.append(model)
                continue
            self._dups_in_a_row += 1
            if self.action == "return":
                self._return(model, key)
                continue
            replacement = self._replacement() if self.action == "replace" else None
            reason = "duplicate of an earlier sample" + ("; replaced by an unseen one" if replacement else "")
            self.end_model_here(model, ModelStatus.Invalid, reason)
            if replacement is not None:
                self._track(replacement, sample_key(replacement.sample))
                to_run.append(replacement)
        if to_run:
            self.engine.submit_models(*to_run)

    def _unknown(self, key: str) -> bool:
        """Seen, but neither running here nor with a result (it was running when the state was saved)."""
        return self._results[key] is None and key not in self._owners

    def _track(self, model: ExecutableModelSpace, key: str) -> None:
        self._set_result(key, None)
        self._owners[key] = model

    def _set_result(self, key: str, result: dict[str, Any] | None) -> None:
        self._results[key] = result
        self._changes.append([key, result])

    def _replacement(self) -> ExecutableModelSpace | None:
        for _ in range(_REPLACE_DRAWS):
            model = self.model_space.random(random_state=self._rng)
            if sample_key(model.sample) not in self._results:
                return model
        _logger.warning("Deduplication: no unseen sample in %d draws; the duplicate is not replaced.", _REPLACE_DRAWS)
        return None

    def _return(self, model: ExecutableModelSpace, key: str) -> None:
        result = self._results[key]
        if result is None:
            self._waiting.setdefault(key, []).append(model)
            return
        model.metrics.intermediates[:] = list(result["intermediates"])
        if result["final"] is not None:
            self.dispatch_model_event(FinalMetricEvent(model, result["final"]))
        status = ModelStatus(result["status"])
        self.dispatch_model_event(TrainingEndEvent(model, status, "duplicate: the earlier result is returned"))

    def handle_event(self, event: ModelEvent) -> None:
        super().handle_event(event)
        if event.event_type is not ModelEventType.TrainingEnd or event.model.sample is None:
            return
        key = sample_key(event.model.sample)
        owner = self._owners.get(key)
        if owner is not event.model and not (owner is None and key in self._results):
            return  # (a model nobody here ran, whose sample was running when the state was saved, counts)
        self._set_result(key, {
            "status": event.model.status.value,
            "final": event.model.metrics.final,
            "intermediates": list(event.model.metrics.intermediates),
        })
        for waiting in self._waiting.pop(key, []):
            self._return(waiting, key)

    def budget_available(self) -> bool:
        if self._dups_in_a_row >= self.patience:  # type: ignore[operator]
            if not self._warned:
                self._warned = True
                _logger.warning("Deduplication: %d duplicates in a row (patience); reporting the budget spent.",
                                self._dups_in_a_row)
            return False
        return self.engine.budget_available()

    def state_dict(self) -> dict[str, Any]:
        """``results``: the results as they were set, in order (the last one of a key counts), a list
        that only grows where the results themselves change (a running sample gets its result)."""
        return {"results": self._changes, "dups_in_a_row": self._dups_in_a_row,
                "rng": rng_state(self._rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        results = state.get("results", {})
        changes = [list(item) for item in results.items()] if isinstance(results, dict) else results  # older states
        for key, result in changes:
            self._set_result(key, result)
        self._dups_in_a_row = int(state.get("dups_in_a_row", 0))
        if state.get("rng") is not None:
            set_rng_state(self._rng, state["rng"])

    def __repr__(self) -> str:
        return f"Deduplication(action={self.action!r})"
