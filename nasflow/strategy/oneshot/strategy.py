"""One-shot strategies: ``DARTS``, ``GumbelDARTS``, ``Proxyless``, ``RandomOneShot``, ``ENAS`` (NNI 3.0 API).

A one-shot strategy turns the raw-format space into a supernet in place, wraps the Lightning
evaluator's module in its algorithm's module, and submits one model to the (sequential) engine: the
search itself. That model's record in the experiment gets one intermediate result per epoch (the
validation metrics of the current best architecture), its sample follows the current best
architecture, and its final result is the exported architecture's validation metrics with the
weights it inherits. Checkpoints (supernet, architecture, optimizers, loops) go to the experiment's
``oneshot/`` folder after every epoch; ``nasflow resume`` continues from the last one.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nasflow.evaluator import Evaluator
from nasflow.execution import ExecutionEngine
from nasflow.mutable import Constraint, Sample
from nasflow.runtime import report_final_result, report_intermediate_result
from nasflow.space import ExecutableModelSpace, ModelStatus, RawFormatModelSpace
from nasflow.strategy.base import Strategy

from .architecture import Architecture, LinearTemperatureScheduler, UnsupportedChoiceError, plain_sample
from .profiler import (
    CostTable,
    ExpectationProfilerPenalty,
    ProfilerPenalty,
    RangeProfilerFilter,
    SampleProfilerPenalty,
)
from .supernet import MutationHook, Support, build_supernet, check_labels, rebuilds_models

if TYPE_CHECKING:  # the training modules import Lightning, which only a search needs
    from .module import OneShotModule

__all__ = ["OneShotStrategy", "DARTS", "GumbelDARTS", "Proxyless", "RandomOneShot", "ENAS"]

_logger = logging.getLogger(__name__)

CHECKPOINT = "last.ckpt"
EXPORT = "supernet.pt"
RUN = "run.json"


class _SupernetSearch(Evaluator):
    """The "evaluator" of the one model a one-shot strategy submits: the whole search."""

    def __init__(self, strategy: OneShotStrategy) -> None:
        self.strategy = strategy

    def evaluate(self, model: nn.Module) -> Any:
        return self.strategy._search()


def _private_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file (a kill leaves the old version whole), readable by the owner only."""
    partial = path.with_name(path.name + ".partial")
    write(partial)
    os.chmod(partial, 0o600)
    os.replace(partial, path)


class OneShotStrategy(Strategy):
    """Base of the one-shot strategies (module docstring).

    ``mutation_hooks`` (NNI's): callables ``hook(module, path, memo, kwargs)`` run on every module
    before the built-in conversions; returning a module replaces it (a :class:`SupernetModule` reads
    the architecture from ``kwargs['arch']``), ``True`` keeps it and stops the later hooks.
    """

    one_shot = True
    support = Support("OneShotStrategy")
    manual_optimization = True

    def __init__(self, mutation_hooks: list[MutationHook] | None = None, **kwargs: Any) -> None:
        super().__init__()
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected arguments {sorted(kwargs)}.")
        self.extra_mutation_hooks = list(mutation_hooks or [])
        self._arch: Architecture | None = None
        self._module: OneShotModule | None = None
        self._run_model: RawFormatModelSpace | None = None
        self._raw: RawFormatModelSpace | None = None
        self._checkpoint_dir: Path | None = None

    # ---- what subclasses define ----------------------------------------------------------------
    def configure_oneshot_module(self, training_module: Any) -> OneShotModule:
        """The algorithm's Lightning module around the evaluator's module."""
        raise NotImplementedError

    def combine_dataloaders(self, train: Any, val: Any) -> Any:
        """What the trainer iterates to train: ``{'train': batch, 'val': batch}`` pairs by default."""
        from lightning.pytorch.utilities.combined_loader import CombinedLoader

        return CombinedLoader({"train": train, "val": val}, mode="max_size_cycle")

    def check_space(self, mutables: dict[str, Any]) -> None:
        """Refuse what the algorithm cannot search (labels are checked against :attr:`support` first)."""
        check_labels(mutables, self.support)

    # ---- building ------------------------------------------------------------------------------
    def mutate_model(self, model: nn.Module) -> nn.Module:
        """Turn ``model`` (a model space) into this strategy's supernet, in place; returns it."""
        from nasflow.mutable import dedup_labeled_mutables
        from nasflow.nn.base import module_leaf_mutables

        mutables = dedup_labeled_mutables(module_leaf_mutables(model))
        self.check_space(mutables)
        arch = Architecture(mutables)
        arch.use({label: m.default() for label, m in mutables.items() if not isinstance(m, Constraint)})
        hooks = list(self.extra_mutation_hooks)
        if hasattr(model, "extra_oneshot_hooks"):
            hooks += list(model.extra_oneshot_hooks(self))
        build_supernet(model, arch, self.support, hooks)
        self._arch = arch
        return model

    def _check_evaluator(self, evaluator: Any) -> None:
        from nasflow.evaluator import Lightning

        name = type(self).__name__
        if not isinstance(evaluator, Lightning):
            raise TypeError(f"{name} trains through a Lightning evaluator (Classification, Regression or Lightning), "
                            f"got {type(evaluator).__name__}.")
        labels = sorted(evaluator.simplify())
        if labels:
            raise UnsupportedChoiceError(f"{name} trains one supernet with one training recipe, so the evaluator "
                                         f"cannot hold choices ({labels}); fix their values, or search them with a "
                                         "multi-trial strategy.")
        if evaluator.datamodule is None and (evaluator.train_dataloaders is None or evaluator.val_dataloaders is None):
            raise ValueError(f"{name} needs both train_dataloaders and val_dataloaders (or a datamodule) in the "
                             "evaluator: it trains on the first and searches on the second.")
        trainer_args = evaluator.trainer.trace_kwargs
        if self.manual_optimization:
            if trainer_args.get("gradient_clip_val") is not None:
                raise ValueError(f"Trainer(gradient_clip_val=...): {name} steps the optimizers itself, where "
                                 f"Lightning cannot clip; pass gradient_clip_val to {name}(...) instead.")
            if trainer_args.get("accumulate_grad_batches", 1) != 1:
                raise ValueError(f"Trainer(accumulate_grad_batches=...): {name} steps the optimizers itself and "
                                 "cannot accumulate; use a larger batch size instead.")
        ddp = trainer_args.get("strategy")
        if ddp in ("ddp", "ddp_spawn") and not self.support.relaxed:
            raise ValueError(f"Trainer(strategy={ddp!r}): {name} trains one sampled path per step, so DDP must allow "
                             f"unused parameters: use strategy='{ddp}_find_unused_parameters_true'.")

    def _bind_profiler(self, profiled: Any, mutables: dict[str, Any]) -> None:
        profiler = getattr(profiled, "profiler", None)
        if isinstance(profiler, CostTable):
            profiler.bind(mutables)

    def _initialize(self, model_space: ExecutableModelSpace, engine: ExecutionEngine) -> ExecutableModelSpace:
        name = type(self).__name__
        if not isinstance(model_space, RawFormatModelSpace):
            raise TypeError(f"{name} trains the space's own weights, so it needs the raw format: leave the config out "
                            "or use NasExperimentConfig('sequential', 'raw').")
        self._check_evaluator(model_space.evaluator)
        self._raw = model_space
        if rebuilds_models(model_space.model_space):
            _logger.warning("%s builds each model anew when freezing it (its own freeze()), so the models %s "
                            "exports get fresh weights, not the supernet's: retrain them.",
                            type(model_space.model_space).__name__, name)
        self.mutate_model(model_space.model_space)
        assert self._arch is not None
        for profiled in (getattr(self, "penalty", None), getattr(self, "filter", None)):
            self._bind_profiler(profiled, self._arch.mutables)
        module = self.configure_oneshot_module(model_space.evaluator.module)  # type: ignore[union-attr]
        module.reporter = self._report_epoch
        self._module = module
        self._run_model = RawFormatModelSpace(model_space.model_space, _SupernetSearch(self))
        self._run_model.status = ModelStatus.Frozen
        return model_space

    # ---- running -------------------------------------------------------------------------------
    def set_checkpoint_dir(self, path: str | os.PathLike[str]) -> None:
        """Where checkpoints, the exported supernet and the run's model id are kept (the experiment's)."""
        self._checkpoint_dir = Path(path)

    def _run_state(self) -> dict[str, Any]:
        if self._checkpoint_dir is None or not (self._checkpoint_dir / RUN).exists():
            return {}
        return json.loads((self._checkpoint_dir / RUN).read_text())

    def _save_run_state(self, **state: Any) -> None:
        if self._checkpoint_dir is not None:
            self._checkpoint_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            text = json.dumps({**self._run_state(), **state})
            _private_write(self._checkpoint_dir / RUN, lambda p: p.write_text(text))

    def _run(self) -> None:
        model = self._run_model
        assert model is not None
        model_id = self._run_state().get("model_id")
        if model_id is not None:  # resuming: the search's record continues, unless it was completed
            if any(m.model_id == model_id and m.status.completed() for m in self.engine.list_models()):
                return
            model.model_id = int(model_id)
        self.engine.submit_models(model)
        self.engine.wait_models(model)

    def _loaders(self) -> tuple[Any, Any]:
        evaluator = self.raw_space.evaluator
        if evaluator.datamodule is not None:
            datamodule = evaluator.datamodule
            datamodule.prepare_data()
            datamodule.setup("fit")
            return datamodule.train_dataloader(), datamodule.val_dataloader()
        return evaluator.train_dataloaders, evaluator.val_dataloaders

    def _search(self) -> dict[str, Any]:
        """Train the supernet (from the last checkpoint, if any), export, report the final result."""
        model, module = self._run_model, self._module
        assert model is not None and module is not None
        self._save_run_state(model_id=model.model_id)
        evaluator = self.raw_space.evaluator
        train, val = self._loaders()
        module.train_loader, module.val_loader = train, val
        fit_kwargs = dict(evaluator.fit_kwargs)
        if self._checkpoint_dir is not None:
            module.checkpoint_path = self._checkpoint_dir / CHECKPOINT
            if module.checkpoint_path.exists():  # resuming: the search's own checkpoint wins
                fit_kwargs["ckpt_path"] = module.checkpoint_path
        trainer = evaluator.fresh_trainer()
        training_module = module.training_module
        try:
            trainer.fit(module, train_dataloaders=self.combine_dataloaders(train, val), val_dataloaders=val,
                        **fit_kwargs)
            if trainer.interrupted:
                raise RuntimeError("Training was interrupted before the search finished.")
            result = module.finish()
        finally:
            training_module.running_mode = "multi"
        model.sample = dict(result.sample)
        self._save_export(result.sample)
        final = dict(result.metrics)
        report_final_result(final)
        return final

    def _report_epoch(self, epoch: int, metrics: dict[str, Any], sample: Sample | None) -> None:
        if self._run_model is not None and sample is not None:
            self._run_model.sample = dict(sample)
        report_intermediate_result({**metrics, "epoch": epoch})

    def _save_export(self, sample: Sample) -> None:
        if self._checkpoint_dir is None:
            return
        state = {"sample": plain_sample(sample), "labels": [str(label) for label in self.supernet_arch.mutables],
                 "state_dict": self.supernet.state_dict()}
        _private_write(self._checkpoint_dir / EXPORT, lambda p: torch.save(state, p))

    # ---- results -------------------------------------------------------------------------------
    @property
    def supernet_arch(self) -> Architecture:
        if self._arch is None:
            raise RuntimeError(f"{type(self).__name__} has not built a supernet yet.")
        return self._arch

    @property
    def raw_space(self) -> RawFormatModelSpace:
        if self._raw is None:
            raise RuntimeError(f"{type(self).__name__} is not initialized.")
        return self._raw

    @property
    def supernet(self) -> nn.Module:
        """The supernet (the space, transformed in place)."""
        return self.raw_space.model_space

    @property
    def oneshot_module(self) -> OneShotModule:
        if self._module is None:
            raise RuntimeError(f"{type(self).__name__} is not initialized.")
        return self._module

    def export(self) -> Sample:
        """The architecture the search exports (the current best while it runs)."""
        module = self.oneshot_module
        return dict(module.result.sample) if module.result is not None else module.current_export()

    def list_models(self, sort: bool = True, limit: int | None = 1) -> Iterator[ExecutableModelSpace]:
        """The exported architecture as a frozen model with inherited weights (one-shot exports one)."""
        if limit not in (None, 1):
            _logger.warning("A one-shot strategy exports one architecture; limit=%s is treated as 1.", limit)
        model = self.raw_space.freeze(self.export())
        module = self.oneshot_module
        if module.result is not None:
            model.metrics.set_final(module.result.metrics)
            model.status = ModelStatus.Trained
        yield model

    def load_supernet(self, model_space: RawFormatModelSpace) -> None:
        """Rebuild the trained supernet of a finished (or checkpointed) search into ``model_space``, so a
        later process exports models with the weights they inherit."""
        if self._checkpoint_dir is None:
            raise RuntimeError("load_supernet needs the experiment's folder; call set_checkpoint_dir first.")
        self._raw = model_space
        self.mutate_model(model_space.model_space)
        export, checkpoint = self._checkpoint_dir / EXPORT, self._checkpoint_dir / CHECKPOINT
        if export.exists():
            state = torch.load(export, map_location="cpu", weights_only=True)["state_dict"]
        elif checkpoint.exists():
            prefix = "training_module.model."
            full = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
            state = {k[len(prefix):]: v for k, v in full.items() if k.startswith(prefix)}
        else:
            raise FileNotFoundError(f"No trained supernet in {self._checkpoint_dir}; the search saved nothing yet.")
        model_space.model_space.load_state_dict(state)


def _penalty(penalty: Any, kind: type[ProfilerPenalty]) -> ProfilerPenalty | None:
    if isinstance(penalty, dict):
        return kind(**penalty)
    if penalty is not None and not callable(penalty):
        raise TypeError(f"penalty must be a dict of {kind.__name__}'s arguments or a penalty, got {penalty!r}.")
    return penalty


class DARTS(OneShotStrategy):
    """DARTS: a softmax-weighted mixture of every candidate, architecture logits learned on validation data.

    Arguments as in NNI 3.0: ``arc_learning_rate`` (Adam on the logits), ``gradient_clip_val`` (weights),
    ``log_prob_every_n_step``, ``warmup_epochs`` (logits frozen), ``penalty`` (a dict of
    :class:`ExpectationProfilerPenalty` arguments, e.g. ``{'profiler': CostTable(...), 'baseline': 10}``).
    Beyond NNI 3.0 (which offers only the first order): ``unrolled=True`` for second-order DARTS.
    """

    support = Support("DARTS", relaxed=True)

    def __init__(self, *, arc_learning_rate: float = 3.0e-4, gradient_clip_val: float | None = None,
                 log_prob_every_n_step: int = 10, warmup_epochs: int = 0, penalty: Any = None,
                 unrolled: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.arc_learning_rate, self.gradient_clip_val = arc_learning_rate, gradient_clip_val
        self.log_prob_every_n_step, self.warmup_epochs = log_prob_every_n_step, warmup_epochs
        self.penalty = _penalty(penalty, ExpectationProfilerPenalty)
        self.unrolled = unrolled

    def _module_arguments(self) -> dict[str, Any]:
        return {"arc_learning_rate": self.arc_learning_rate, "gradient_clip_val": self.gradient_clip_val,
                "log_prob_every_n_step": self.log_prob_every_n_step, "warmup_epochs": self.warmup_epochs,
                "penalty": self.penalty, "unrolled": self.unrolled}

    def configure_oneshot_module(self, training_module: Any) -> OneShotModule:
        from .differentiable import DartsModule

        return DartsModule(training_module, self.supernet, self.supernet_arch, **self._module_arguments())


class GumbelDARTS(DARTS):
    """DARTS with Gumbel-softmax weights (FBNet, SNAS). ``temperature``: a float, ``(init, min)``,
    ``{'init': ..., 'min': ...}`` or a :class:`LinearTemperatureScheduler` (annealed over the epochs)."""

    support = Support("GumbelDARTS", relaxed=True)

    def __init__(self, *, temperature: Any = (1.0, 0.33), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(temperature, LinearTemperatureScheduler):
            self.temperature = temperature
        elif isinstance(temperature, (int, float)):
            self.temperature = LinearTemperatureScheduler(temperature, temperature)
        elif isinstance(temperature, tuple) and len(temperature) == 2:
            self.temperature = LinearTemperatureScheduler(*temperature)
        elif isinstance(temperature, dict) and set(temperature) == {"init", "min"}:
            self.temperature = LinearTemperatureScheduler(temperature["init"], temperature["min"])
        else:
            raise ValueError(f"Invalid temperature {temperature!r}: give a number, (init, min), "
                             "{'init': ..., 'min': ...} or a LinearTemperatureScheduler.")

    def configure_oneshot_module(self, training_module: Any) -> OneShotModule:
        from .differentiable import GumbelDartsModule

        return GumbelDartsModule(training_module, self.supernet, self.supernet_arch,
                                 temperature_scheduler=self.temperature, **self._module_arguments())


class Proxyless(DARTS):
    """ProxylessNAS: one path per step drawn from the softmax of the logits, learned through binary gates.

    Searches ``LayerChoice``, ``InputChoice`` (one input) and ``Repeat`` (and the ``Cell`` built from
    them); takes DARTS's arguments. A latency table: ``penalty={'profiler': CostTable(...),
    'baseline': target, 'scale': beta, 'aggregate': 'mul'}`` is ProxylessNAS's ``loss * (lat / T) ** beta``.
    """

    support = Support("Proxyless", gated=True, mixed_operations=False, several_inputs=False)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.unrolled:
            raise ValueError("Proxyless trains one sampled path per step; second-order (unrolled) DARTS needs the "
                             "relaxed mixture. Use DARTS(unrolled=True).")

    def configure_oneshot_module(self, training_module: Any) -> OneShotModule:
        from .differentiable import ProxylessModule

        return ProxylessModule(training_module, self.supernet, self.supernet_arch, **self._module_arguments())


class RandomOneShot(OneShotStrategy):
    """SPOS: train the supernet on uniformly drawn paths, then search it with inherited weights.

    ``filter`` (NNI's): ``filter(sample) -> bool`` (or a dict of :class:`RangeProfilerFilter` arguments)
    skips architectures. Beyond NNI (which exports a random sample): after training, ``search_samples``
    distinct architectures are scored on the validation data, each after its BatchNorm statistics are
    recomputed on ``recalibrate_batches`` training batches, and the best is exported.
    """

    support = Support("RandomOneShot", constraints=True, continuous=True, any_number_of_inputs=True)
    manual_optimization = False

    def __init__(self, filter: Any = None, *, search_samples: int = 20,  # noqa: A002 - NNI's name
                 recalibrate_batches: int = 10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filter = RangeProfilerFilter(**filter) if isinstance(filter, dict) else filter
        if self.filter is not None and not callable(self.filter):
            raise TypeError(f"filter must be a function sample -> bool, got {filter!r}.")
        if search_samples < 1 or recalibrate_batches < 0:
            raise ValueError("search_samples must be >= 1 and recalibrate_batches >= 0.")
        self.search_samples, self.recalibrate_batches = search_samples, recalibrate_batches

    def combine_dataloaders(self, train: Any, val: Any) -> Any:
        return train

    def configure_oneshot_module(self, training_module: Any) -> OneShotModule:
        from .sampling import RandomModule

        return RandomModule(training_module, self.supernet, self.supernet_arch, filter=self.filter,
                            search_samples=self.search_samples, recalibrate_batches=self.recalibrate_batches)

    def sub_state_dict(self, sample: Sample) -> dict[str, torch.Tensor]:
        """The state dict of ``sample``'s frozen model with the weights it inherits (NNI's)."""
        return self.raw_space.freeze(sample).executable_model().state_dict()


class ENAS(OneShotStrategy):
    """ENAS: an LSTM controller trained by REINFORCE on validation reward picks each step's path.

    NNI 3.0 arguments: ``batches_per_update`` (validation batches per controller step),
    ``log_prob_every_n_step``, ``reward_metric_name`` (which validation metric is the reward, default
    ``'default'``; a Regression metric is negated, the reward being maximized), ``warmup_epochs``
    (controller frozen), ``penalty`` (a dict of :class:`SampleProfilerPenalty` arguments, applied to
    the reward: give a negative ``scale``). NNI's ``policy_fn``, ``update_kwargs`` and
    ``replay_buffer_size`` configure its tianshou policy; here the controller is ENAS's own, tuned with
    ``ctrl_learning_rate``, ``entropy_weight``, ``baseline_decay`` and ``ctrl_kwargs`` (``lstm_size``,
    ``lstm_num_layers``, ``tanh_constant``, ``temperature``), as NNI 2's ENAS trainer took them.
    """

    support = Support("ENAS", any_number_of_inputs=True, several_inputs=False)

    def __init__(self, *, batches_per_update: float = 20, log_prob_every_n_step: int = 10,
                 replay_buffer_size: int | None = None, reward_metric_name: str | None = None,
                 policy_fn: Any = None, update_kwargs: dict | None = None, warmup_epochs: int = 0,
                 penalty: Any = None, ctrl_learning_rate: float = 3.5e-4, entropy_weight: float = 1e-4,
                 baseline_decay: float = 0.999, ctrl_kwargs: dict[str, Any] | None = None,
                 gradient_clip_val: float | None = None, filter: Any = None, **kwargs: Any) -> None:  # noqa: A002
        super().__init__(**kwargs)
        for name, value in (("policy_fn", policy_fn), ("update_kwargs", update_kwargs),
                            ("replay_buffer_size", replay_buffer_size)):
            if value is not None:
                raise TypeError(f"ENAS({name}=...) configures NNI's tianshou policy, which nasflow does not use; its "
                                "ENAS trains an LSTM controller by REINFORCE: tune ctrl_learning_rate, "
                                "entropy_weight, baseline_decay and ctrl_kwargs instead.")
        if filter is not None:
            raise ValueError("ENAS does not support a sampling filter (as in NNI); the controller picks the paths.")
        self.batches_per_update, self.log_prob_every_n_step = batches_per_update, log_prob_every_n_step
        self.reward_metric_name, self.warmup_epochs = reward_metric_name, warmup_epochs
        self.penalty = _penalty(penalty, SampleProfilerPenalty)
        if isinstance(self.penalty, ProfilerPenalty) and self.penalty.scale > 0:
            _logger.warning("ENAS adds the penalty to the reward, which it maximizes: a positive scale rewards cost.")
        self.ctrl_learning_rate, self.entropy_weight = ctrl_learning_rate, entropy_weight
        self.baseline_decay, self.ctrl_kwargs = baseline_decay, dict(ctrl_kwargs or {})
        self.gradient_clip_val = gradient_clip_val

    def configure_oneshot_module(self, training_module: Any) -> OneShotModule:
        from .controller import ReinforceController
        from .sampling import EnasModule

        arch = self.supernet_arch
        return EnasModule(training_module, self.supernet, arch, batches_per_update=self.batches_per_update,
                          log_prob_every_n_step=self.log_prob_every_n_step,
                          reward_metric_name=self.reward_metric_name, warmup_epochs=self.warmup_epochs,
                          penalty=self.penalty, ctrl_learning_rate=self.ctrl_learning_rate,
                          entropy_weight=self.entropy_weight, baseline_decay=self.baseline_decay,
                          controller=ReinforceController(arch.mutables, **self.ctrl_kwargs),
                          gradient_clip_val=self.gradient_clip_val)

