"""``TPE``: Tree-structured Parzen Estimator, by Optuna's ``TPESampler`` through its ask/tell interface."""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any

from nasflow.execution import ExecutionEngine, ModelEvent, ModelEventType
from nasflow.space import ExecutableModelSpace, ModelStatus, metric_score

from .append_log import AppendLog
from .base import Strategy
from .utils import EventHooks, check_int, check_seed, sample_key

if TYPE_CHECKING:
    import optuna

    from .tpe_space import OptunaSpace

__all__ = ["TPE"]

_logger = logging.getLogger(__name__)

_RANDOM_DRAWS = 1000
_RUNNING = "running"  # a sample's result is not known yet
_FAILED = "failed"  # a sample ended without a metric


class TPE(Strategy):
    """TPE (Bergstra et al., 2011) with Optuna's ``TPESampler``.

    Each model is an Optuna trial: asked when a worker is idle, told when the model ends: its score
    (COMPLETE, maximized: the metric, negated when the evaluator minimizes it), FAIL when it failed
    without one, PRUNED (with its intermediate metrics) when it was interrupted or invalid. A sample
    that breaks the space's constraints is told PRUNED and another asked. With ``dedup`` a sample
    seen before is not run again: the trial is told the earlier result; after ``max_retries`` such
    answers in a row an unseen random sample is enqueued instead, and the search stops when none is
    left.

    ``n_startup_trials`` random trials come first; other keyword arguments go to ``TPESampler``
    (e.g. ``multivariate=False``, ``n_ei_candidates=48``). The random numbers of each trial follow
    from the seed (a random one when ``seed`` is None, kept in the state) and the trial's number,
    so the state (``state_dict``) is the seed and the told trials, a list that only grows.

    TPE scores each candidate against every trial it models, so its cost per trial grows with them
    (18-32 ms per trial at 2,000 trials with all of them, ``benchmarks/tpe_window.py``). TPE here
    models the ``max_history`` most recent finished trials and the 25 best ever told, with its
    "good" group sized by all the trials (so that group is the one of the whole study): up to
    ``max_history`` trials it samples exactly as Optuna's ``TPESampler``; past them its model of the
    rest of the space forgets the oldest trials (which Optuna's default weights fade already) and
    its cost per trial stays bounded. ``max_history=None`` models every trial (and allows a custom
    ``gamma``).
    """

    def __init__(self, seed: int | None = None, *, n_startup_trials: int = 10, dedup: bool = True,
                 max_retries: int = 20, max_history: int | None = 150, **sampler_kwargs: Any) -> None:
        super().__init__()
        self.seed = check_seed("TPE", seed)
        self.n_startup_trials = check_int("TPE", "n_startup_trials", n_startup_trials, 0)
        self.dedup = bool(dedup)
        self.max_retries = check_int("TPE", "max_retries", max_retries, 1)
        self.max_history = check_int("TPE", "max_history", max_history, 1, allow_none=True)
        if self.max_history is not None and self.max_history < self.n_startup_trials:  # type: ignore[operator]
            raise ValueError(f"TPE: max_history ({max_history}) must be at least n_startup_trials "
                             f"({n_startup_trials}), or TPE would never model enough trials to start.")
        self._base_seed = seed if seed is not None else random.SystemRandom().getrandbits(32)
        self._sampler_kwargs = sampler_kwargs
        self._sampler = self._make_sampler()
        self._space: OptunaSpace | None = None
        self._study: optuna.Study | None = None
        self._asked: dict[int, tuple[ExecutableModelSpace, optuna.trial.Trial]] = {}
        self._reported: dict[int, dict[int, float]] = {}  # intermediates told, per running model
        self._results: dict[str, Any] = {}  # sample key -> metric, _RUNNING or _FAILED
        self._history = AppendLog()  # told trials in order; records are never changed
        self._loaded = 0  # history records whose results are not in _results yet (loaded before initialize)
        self._hooks = EventHooks()

    # ---- lifecycle ----------------------------------------------------------------------------
    def _initialize(self, model_space: ExecutableModelSpace, engine: ExecutionEngine) -> ExecutableModelSpace:
        from .tpe_space import OptunaSpace

        self._space = OptunaSpace(model_space.simplify())  # raises early on a leaf TPE cannot search
        self._learn_loaded()
        self._hooks.register(engine, ModelEventType.IntermediateMetric, self._on_intermediate)
        self._hooks.register(engine, ModelEventType.TrainingEnd, self._on_training_end)
        return model_space

    def _cleanup(self) -> None:
        self._hooks.clear()

    @property
    def study(self) -> optuna.Study:
        """The Optuna study (built on first use, with the trials of a loaded state re-added)."""
        if self._study is None:
            import optuna

            self._study = optuna.create_study(direction="maximize", sampler=self._sampler)
            self._study.add_trials([self._frozen_trial(record) for record in self._history])
        return self._study

    def _run(self) -> None:
        while self.wait_for_worker():
            model = self._ask_model()
            if model is None:
                _logger.info("TPE: no unseen sample left to try; stopping.")
                break
            self.engine.submit_models(model)
        self.engine.wait_models(wait_all=True)

    # ---- asking -------------------------------------------------------------------------------
    def _ask_model(self) -> ExecutableModelSpace | None:
        from optuna.trial import TrialState

        assert self._space is not None
        for _ in range(self.max_retries):  # type: ignore[arg-type]
            trial = self.study.ask()
            sample = self._space.suggest(trial)
            if not self.model_space.contains(sample):
                self._tell(trial, TrialState.PRUNED)
                continue
            earlier = self._results.get(sample_key(sample))
            if not self.dedup or earlier is None:
                return self._submit(trial, sample)
            if isinstance(earlier, float):
                self._tell(trial, TrialState.COMPLETE, earlier)
            else:
                self._tell(trial, TrialState.FAIL)
        return self._ask_unseen()

    def _ask_unseen(self) -> ExecutableModelSpace | None:
        """An unseen random sample, enqueued so that TPE knows it asked it."""
        from optuna.trial import TrialState

        assert self._space is not None
        rng = random.Random(f"{self._base_seed}:{len(self._history)}:{len(self._asked)}")  # follows from the state
        for _ in range(_RANDOM_DRAWS):
            sample = self.model_space.random(random_state=rng).sample
            if self.dedup and sample_key(sample) in self._results:
                continue
            self.study.enqueue_trial(self._space.params_of(sample))
            trial = self.study.ask()
            sample = self._space.suggest(trial)  # the same, unless TPE's range had to clip it (normal tails)
            if not self.model_space.contains(sample) or (self.dedup and sample_key(sample) in self._results):
                self._tell(trial, TrialState.PRUNED)
                continue
            return self._submit(trial, sample)
        return None

    def _submit(self, trial: optuna.trial.Trial, sample: dict[str, Any]) -> ExecutableModelSpace:
        model = self.model_space.freeze(sample)
        self._results[sample_key(model.sample)] = _RUNNING
        self._asked[id(model)] = (model, trial)
        return model

    # ---- telling ------------------------------------------------------------------------------
    def _on_intermediate(self, event: ModelEvent) -> None:
        entry = self._asked.get(id(event.model))
        model = event.model
        last = model.metrics.intermediates[-1] if model.metrics.intermediates else None
        value = metric_score(last, model.metric_direction)
        if entry is None or value is None:
            return
        step = len(event.model.metrics.intermediates) - 1
        reported = self._reported.setdefault(id(event.model), {})
        if step not in reported:  # a retried model reports its steps again
            reported[step] = value
            entry[1].report(value, step)

    def _on_training_end(self, event: ModelEvent) -> None:
        from optuna.trial import TrialState

        model = event.model
        entry = self._asked.pop(id(model), None)
        intermediates = self._reported.pop(id(model), {})
        if model.sample is None:
            return
        metric = model.score  # optuna maximizes: a minimized metric is told negated
        self._results[sample_key(model.sample)] = metric if metric is not None else _FAILED
        if entry is None:  # not asked by TPE: told as a finished trial of its own
            self._add_finished(model.sample, metric)
        elif metric is not None:
            self._tell(entry[1], TrialState.COMPLETE, metric, intermediates, ran=True)
        elif model.status == ModelStatus.Failed:
            self._tell(entry[1], TrialState.FAIL, None, intermediates, ran=True)
        else:  # Interrupted (e.g. MedianStop) or Invalid: worse than its intermediates suggest
            self._tell(entry[1], TrialState.PRUNED, None, intermediates, ran=True)

    def _tell(self, trial: optuna.trial.Trial, state: Any, value: float | None = None,
              intermediates: dict[int, float] | None = None, ran: bool = False) -> None:
        """Tell Optuna, and keep the record a resumed search re-adds to its fresh study."""
        self.study.tell(trial, value if state.name == "COMPLETE" else None, state=state)
        self._history.append(_record(dict(trial.params), state.name, value, intermediates, ran))

    def _add_finished(self, sample: dict[str, Any], metric: float | None) -> None:
        """A model TPE did not ask (e.g. a Deduplication replacement): learn from it anyway."""
        if self._space is None:
            return
        state = "COMPLETE" if metric is not None else "FAIL"
        record = _record(self._space.params_of(sample), state, metric, None, ran=True)
        if sample_key(self._space.sample_of(record["params"])) != sample_key(sample):
            record["key"] = sample_key(sample)  # its params stand for another sample (a clipped normal)
        self.study.add_trial(self._frozen_trial(record))
        self._history.append(record)

    def _frozen_trial(self, record: dict[str, Any]) -> optuna.trial.FrozenTrial:
        import optuna
        from optuna.trial import TrialState

        assert self._space is not None
        distributions = self._space.distributions
        params = {name: value for name, value in record["params"].items() if name in distributions}
        return optuna.trial.create_trial(
            state=TrialState[record["state"]],
            value=record.get("value") if record["state"] == "COMPLETE" else None,
            params=params,
            distributions={name: distributions[name] for name in params},
            intermediate_values={int(k): v for k, v in record.get("intermediate", {}).items()},
        )

    # ---- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-able: the seed, and the told trials in order (re-added to a fresh study on load).

        ``history`` only grows, and a record never changes once added: an ``AppendLog`` (the search's
        own, not a copy), stored by appending the new records.
        """
        return {"seed": self._base_seed, "history": self._history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self._study is not None:
            raise RuntimeError("TPE: load_state_dict must come before run(); use a new TPE object to resume.")
        if state.get("seed") is not None and state["seed"] != self._base_seed:
            self._base_seed = int(state["seed"])
            self._sampler = self._make_sampler()
        self._history = AppendLog(state.get("history", []))
        self._loaded = len(self._history)
        self._learn_loaded()

    def _make_sampler(self) -> Any:
        from .tpe_sampler import CountedTPESampler, TrialWindow

        try:
            window = None if self.max_history is None else TrialWindow(self.max_history)
            return CountedTPESampler(seed=self._base_seed, window=window,
                                     n_startup_trials=self.n_startup_trials, **self._sampler_kwargs)
        except TypeError as err:
            raise TypeError(
                f"TPE: {err}. Arguments besides seed, n_startup_trials, dedup, max_retries and max_history "
                "go to optuna.samplers.TPESampler; check their names against its documentation."
            ) from err

    def _learn_loaded(self) -> None:
        """The results of loaded records (which needs the space, known from ``initialize`` on)."""
        if self._space is None or not self._loaded:
            return
        for record in self._history[: self._loaded]:
            if record.get("ran"):
                key = record.get("key") or sample_key(self._space.sample_of(record["params"]))
                self._results[key] = record["value"] if record["state"] == "COMPLETE" else _FAILED
        self._loaded = 0


def _record(params: dict[str, Any], state: str, value: float | None, intermediates: dict[int, float] | None,
            ran: bool) -> dict[str, Any]:
    """One told trial, as small as it can be: ``ran`` marks a model's end (its result counts for dedup)."""
    record: dict[str, Any] = {"params": params, "state": state}
    if value is not None:
        record["value"] = value
    if intermediates:
        record["intermediate"] = {str(k): v for k, v in intermediates.items()}
    if ran:
        record["ran"] = True
    return record
