"""RandomOneShot (SPOS) and ENAS: the supernet trains one sampled path per step.

RandomOneShot draws every step's path uniformly (constraints and the user's filter respected) and,
once the supernet is trained, searches it: ``search_samples`` distinct architectures are scored on the
validation data with the inherited weights, each after its BatchNorm statistics are recomputed on
training batches (SPOS), and the best is exported.

ENAS draws paths from an LSTM controller. Each step trains the shared weights on a training batch
(path drawn from the controller), then scores a fresh draw on a validation batch; the controller
learns from that reward by REINFORCE with a moving-average baseline and an entropy bonus, stepping
every ``batches_per_update`` validation batches.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

import lightning
import torch
from torch import nn

from nasflow.mutable import Sample
from nasflow.space import metric_score
from nasflow.strategy.utils import sample_key

from .architecture import Architecture, plain_sample
from .controller import ReinforceController
from .module import OneShotModule

__all__ = ["RandomModule", "EnasModule"]

_logger = logging.getLogger(__name__)


class RandomModule(OneShotModule):
    """SPOS: uniform path sampling, then a search over the trained supernet (module docstring)."""

    def __init__(self, training_module: lightning.LightningModule, supernet: nn.Module, arch: Architecture, *,
                 filter: Callable[[Sample], bool] | None = None,  # noqa: A002 - NNI's argument name
                 search_samples: int = 20, recalibrate_batches: int = 10) -> None:
        super().__init__(training_module, supernet, arch)
        self.filter, self.search_samples, self.recalibrate_batches = filter, search_samples, recalibrate_batches
        self.search_results: list[tuple[Sample, dict[str, Any]]] = []

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        self.arch.use(self.broadcast(self.arch.uniform(self.rng, self.filter)))
        return self.training_module.training_step(batch, batch_idx)

    def validation_sample(self) -> Sample | None:
        return None  # the supernet's accuracy on uniformly drawn paths

    def current_export(self) -> Sample:
        """The best architecture the search scored; before the search, a random one (as NNI exports)."""
        if self.search_results:
            return max(self.search_results, key=self._rank)[0]
        return self.arch.uniform(random.Random(self.seed), self.filter)

    def _rank(self, result: tuple[Sample, dict[str, Any]]) -> float:
        return metric_score(float(result[1]["default"]), self.training_module.metric_direction)  # type: ignore[return-value]

    def final_export(self) -> Sample:
        candidates: list[Sample] = []
        seen: set[str] = set()
        for _ in range(max(1, self.search_samples) * 20):
            if len(candidates) == max(1, self.search_samples):
                break
            sample = self.arch.uniform(self.rng, self.filter)
            if sample_key(sample) not in seen:
                seen.add(sample_key(sample))
                candidates.append(sample)
        candidates = self.broadcast(candidates)
        self.search_results = [(s, self.score(s, self.recalibrate_batches)) for s in candidates]
        best = self.current_export()
        _logger.info("RandomOneShot scored %d architectures on the trained supernet; best: %s", len(candidates), best)
        return best

    def broadcast(self, sample: Any) -> Any:
        return sample if self._trainer is None else super().broadcast(sample)

    def extra_state(self) -> dict[str, Any]:
        return {"search_results": [(plain_sample(s), metrics) for s, metrics in self.search_results]}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.search_results = list(state.get("search_results", []))


class EnasModule(OneShotModule):
    """ENAS (module docstring); ``controller`` defaults to a :class:`ReinforceController` of the space."""

    def __init__(self, training_module: lightning.LightningModule, supernet: nn.Module, arch: Architecture, *,
                 batches_per_update: float = 20, log_prob_every_n_step: int = 10,
                 reward_metric_name: str | None = None, warmup_epochs: int = 0, penalty: Any = None,
                 ctrl_learning_rate: float = 3.5e-4, entropy_weight: float = 1e-4, baseline_decay: float = 0.999,
                 controller: nn.Module | None = None, gradient_clip_val: float | None = None) -> None:
        super().__init__(training_module, supernet, arch)
        self.automatic_optimization = False
        self.batches_per_update = max(1, int(batches_per_update))
        self.log_prob_every_n_step, self.reward_metric_name = log_prob_every_n_step, reward_metric_name
        self.warmup_epochs, self.penalty, self.ctrl_learning_rate = warmup_epochs, penalty, ctrl_learning_rate
        self.entropy_weight, self.baseline_decay = entropy_weight, baseline_decay
        self.gradient_clip_val = gradient_clip_val
        self.controller = controller if controller is not None else ReinforceController(arch.mutables)
        self.baseline: float | None = None
        self.controller_batches = 0

    def architecture_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.controller.parameters(), lr=self.ctrl_learning_rate)]

    def current_export(self) -> Sample:
        with torch.no_grad():
            return self.controller(greedy=True)[0]

    def _draw(self) -> Sample:
        with torch.no_grad():
            sample = self.controller(self.generator)[0]
        return self.broadcast(sample)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        if not isinstance(batch, dict) or set(batch) != {"train", "val"}:
            raise TypeError(f"ENAS trains on {{'train': batch, 'val': batch}} pairs; got {type(batch)}.")
        self.arch.use(self._draw())
        output = self.training_module.training_step(batch["train"], batch_idx)
        self.weight_step(self.step_loss(output), batch_idx, self.gradient_clip_val)
        if self.current_epoch >= self.warmup_epochs:
            self._controller_step(batch["val"], batch_idx)
        return output

    def reward(self, metrics: dict[str, Any]) -> float:
        name = self.reward_metric_name or "default"
        if name not in metrics:
            raise KeyError(f"ENAS's reward_metric_name {name!r} is not among the validation metrics {sorted(metrics)}.")
        return metric_score(float(metrics[name]), self.training_module.metric_direction)  # type: ignore[return-value]

    def _controller_step(self, val_batch: Any, batch_idx: int) -> None:
        sample = self._draw()
        reward = self.reward(self.score_batch(sample, val_batch))
        if self.penalty is not None:
            reward, details = self.penalty(reward, sample)
            self.log_dict({f"penalty/{k}": float(v) for k, v in details.items()})
        reward = float(self.trainer.strategy.reduce(torch.tensor(float(reward), device=self.device), reduce_op="mean"))
        _, log_prob, entropy = self.controller(given=sample)
        reward += self.entropy_weight * float(entropy.detach())
        self.baseline = reward if self.baseline is None else \
            self.baseline_decay * self.baseline + (1 - self.baseline_decay) * reward
        loss = -(reward - self.baseline) * log_prob / self.batches_per_update
        self.manual_backward(loss)
        self.controller_batches += 1
        if self.log_prob_every_n_step and batch_idx % self.log_prob_every_n_step == 0:
            self.log_dict({"controller/reward": reward, "controller/baseline": self.baseline,
                           "controller/entropy": float(entropy.detach()),
                           "controller/log_prob": float(log_prob.detach())})
        if self.controller_batches % self.batches_per_update == 0:
            optimizer = self.own_optimizers()[0]
            optimizer.step()
            optimizer.zero_grad()

    def score_batch(self, sample: Sample, batch: Any) -> dict[str, Any]:
        self.arch.use(sample)
        return self.validate_here([batch])

    def extra_state(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "controller_batches": self.controller_batches}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.baseline = state.get("baseline")
        self.controller_batches = int(state.get("controller_batches", 0))
