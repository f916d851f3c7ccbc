"""DARTS, GumbelDARTS and ProxylessNAS: architecture logits learned by gradient on validation data.

Each training step takes a training and a validation batch. First the *architecture step*: the
evaluator's ``training_step`` on the validation batch, its loss (plus the cost penalty, if any)
backpropagated to the architecture logits, which their own Adam optimizer updates (second-order
DARTS corrects that gradient for the weight step it anticipates). Then the *weight step*: the same
``training_step`` on the training batch, stepped by the evaluator's optimizer. DARTS mixes all
candidates by softmax weights; GumbelDARTS by Gumbel-softmax samples whose temperature anneals;
Proxyless runs one path drawn from the softmax and reaches the logits through binary gates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning
import torch
from torch import Tensor, nn

from nasflow.mutable import Constraint, Sample

from .architecture import Architecture, LinearTemperatureScheduler, choice_size
from .module import OneShotModule

__all__ = ["DartsModule", "GumbelDartsModule", "ProxylessModule", "unrolled_gradients"]


class DartsModule(OneShotModule):
    """DARTS (see the module docstring). ``unrolled`` selects the second-order approximation."""

    def __init__(self, training_module: lightning.LightningModule, supernet: nn.Module, arch: Architecture, *,
                 arc_learning_rate: float = 3.0e-4, gradient_clip_val: float | None = None,
                 log_prob_every_n_step: int = 10, warmup_epochs: int = 0, penalty: Any = None,
                 unrolled: bool = False) -> None:
        super().__init__(training_module, supernet, arch)
        self.automatic_optimization = False
        self.arc_learning_rate, self.gradient_clip_val = arc_learning_rate, gradient_clip_val
        self.log_prob_every_n_step, self.warmup_epochs = log_prob_every_n_step, warmup_epochs
        self.penalty, self.unrolled = penalty, unrolled
        labels = [label for label, m in arch.mutables.items() if not isinstance(m, Constraint)]
        self.arch_logits = nn.ParameterList(
            [nn.Parameter(torch.randn(choice_size(arch.mutables[label])) * 1e-3) for label in labels])
        arch.logits = dict(zip(labels, self.arch_logits, strict=True))

    def architecture_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.arch_logits.parameters(), self.arc_learning_rate, betas=(0.5, 0.999),
                                 weight_decay=1e-3)]

    def current_export(self) -> Sample:
        return self.arch.argmax()

    def prepare_architecture(self) -> None:
        """The mode of the next forward pass: relaxed (DARTS, GumbelDARTS) or a gated path (Proxyless)."""
        self.arch.use(None)

    def on_train_epoch_start(self) -> None:
        warming = self.current_epoch < self.warmup_epochs
        for logits in self.arch_logits:
            logits.requires_grad_(not warming)
        self.training_module.on_train_epoch_start()

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        if not isinstance(batch, dict) or set(batch) != {"train", "val"}:
            raise TypeError(f"{type(self).__name__} trains on {{'train': batch, 'val': batch}} pairs; "
                            f"got {type(batch)}.")
        if self.current_epoch >= self.warmup_epochs:
            self.architecture_step(batch["train"], batch["val"], batch_idx)
        self.prepare_architecture()
        output = self.training_module.training_step(batch["train"], 2 * batch_idx + 1)
        self.weight_step(self.step_loss(output), batch_idx, self.gradient_clip_val)
        if self.log_prob_every_n_step and batch_idx % self.log_prob_every_n_step == 0:
            with torch.no_grad():
                self.log_dict({f"prob/{label}/{value}": float(p) for label, dist in self.arch.probabilities().items()
                               for value, p in dist.items()})
        return output

    def _architecture_loss(self, batch: Any, batch_idx: int) -> Tensor:
        self.prepare_architecture()
        loss = self.step_loss(self.training_module.training_step(batch, 2 * batch_idx))
        if self.penalty is not None:
            loss, details = self.penalty(loss, self.arch.probabilities())
            self.log_dict({f"penalty/{k}": float(torch.as_tensor(v).detach()) for k, v in details.items()})
        return loss

    def architecture_step(self, train_batch: Any, val_batch: Any, batch_idx: int) -> None:
        optimizer = self.own_optimizers()[0]
        optimizer.zero_grad()
        if self.unrolled:
            self._unrolled_gradients(train_batch, val_batch, batch_idx)
        else:
            self.manual_backward(self._architecture_loss(val_batch, batch_idx))
        optimizer.step()

    # ---- second order -----------------------------------------------------------------------------
    def _unrolled_gradients(self, train_batch: Any, val_batch: Any, batch_idx: int) -> None:
        weights = [p for p in self.training_module.parameters() if p.requires_grad]
        group = self.weight_optimizer().optimizer.param_groups[0]

        def train_loss() -> Tensor:
            self.prepare_architecture()
            return self.step_loss(self.training_module.training_step(train_batch, 2 * batch_idx))

        gradients = unrolled_gradients(train_loss, lambda: self._architecture_loss(val_batch, batch_idx), weights,
                                       list(self.arch_logits), float(group["lr"]), float(group.get("weight_decay", 0)))
        for logits, gradient in zip(self.arch_logits, gradients, strict=True):
            logits.grad = gradient


def unrolled_gradients(train_loss: Callable[[], Tensor], val_loss: Callable[[], Tensor], weights: list[Tensor],
                       logits: list[Tensor], xi: float, weight_decay: float = 0.0) -> list[Tensor]:
    """DARTS's second-order gradient of the validation loss with respect to the architecture ``logits``:
    ``dL_val(w', a)/da - xi * d2L_train(w, a)/(da dw) . dL_val(w', a)/dw'`` at the virtual weights
    ``w' = w - xi * (dL_train(w, a)/dw + weight_decay * w)``, the Hessian-vector product by central
    differences with ``eps = 0.01 / |dL_val/dw'|`` (as in the paper). ``weights`` end as they started.
    """
    def grads(loss: Tensor, wrt: list[Tensor]) -> list[Tensor]:
        found = torch.autograd.grad(loss, wrt, allow_unused=True)
        return [torch.zeros_like(t) if g is None else g for g, t in zip(found, wrt, strict=True)]

    saved = [w.detach().clone() for w in weights]
    try:
        step = grads(train_loss(), weights)
        with torch.no_grad():  # the virtual weight step
            for w, g in zip(weights, step, strict=True):
                w.sub_(xi * (g + weight_decay * w))
        found = grads(val_loss(), logits + weights)
        d_logits, d_weights = found[: len(logits)], found[len(logits):]
        norm = float(torch.sqrt(sum((g * g).sum() for g in d_weights)))
        hessian = [torch.zeros_like(t) for t in logits]
        if norm > 0:
            eps = 0.01 / norm
            for sign in (1.0, -1.0):
                with torch.no_grad():
                    for w, original, d in zip(weights, saved, d_weights, strict=True):
                        w.copy_(original + sign * eps * d)
                for h, g in zip(hessian, grads(train_loss(), logits), strict=True):
                    h.add_(sign * g / (2 * eps))
    finally:
        with torch.no_grad():
            for w, original in zip(weights, saved, strict=True):
                w.copy_(original)
    return [d - xi * h for d, h in zip(d_logits, hessian, strict=True)]


class GumbelDartsModule(DartsModule):
    """GumbelDARTS: DARTS with Gumbel-softmax weights, one draw per label and step, annealed each epoch."""

    def __init__(self, training_module: lightning.LightningModule, supernet: nn.Module, arch: Architecture, *,
                 temperature_scheduler: LinearTemperatureScheduler, **kwargs: Any) -> None:
        super().__init__(training_module, supernet, arch, **kwargs)
        self.temperature_scheduler = temperature_scheduler
        self.temperature = temperature_scheduler.init
        arch.weight_fn = self._gumbel_softmax

    def _gumbel_softmax(self, logits: Tensor) -> Tensor:
        uniform = torch.rand(logits.shape, generator=self.generator).clamp_(1e-10, 1.0 - 1e-7)
        gumbel = -torch.log(-torch.log(uniform)).to(logits.device, logits.dtype)  # same draw on every rank
        return torch.softmax((logits + gumbel) / self.temperature, dim=-1)

    def on_train_epoch_start(self) -> None:
        self.temperature = self.temperature_scheduler.step(self.current_epoch, self.trainer.max_epochs)
        self.log("gumbel_temperature", self.temperature)
        super().on_train_epoch_start()


class ProxylessModule(DartsModule):
    """ProxylessNAS: each step runs one path drawn from the softmax of the logits (binary gates)."""

    def prepare_architecture(self) -> None:
        self.arch.use(self.broadcast(self.arch.draw(self.generator)), gates=True)
