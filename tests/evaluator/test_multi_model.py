"""Merged (CGO) training: one training stack, so merged models end bit for bit where each would alone;
batched models end there to rounding; what cannot be merged or batched faithfully is refused."""

from __future__ import annotations

import copy
import logging
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import nasflow
from nasflow.evaluator import (
    Classification,
    DataLoader,
    Lightning,
    LightningModule,
    MergedModel,
    MultiModelLightningModule,
    MultiModelTrainer,
    Regression,
    Trainer,
    check_mergeable,
    evaluate_model,
    merge_evaluators,
    merge_refusal,
    split_multi_model_metric,
)
from nasflow.evaluator.classification import ClassificationModule
from nasflow.evaluator.merged_model import batching_refusal

pytestmark = pytest.mark.filterwarnings("ignore:.*does not have many workers", "ignore:.*treespec",
                                        "ignore:.*smaller than the logging interval")

QUIET: dict[str, Any] = {"enable_progress_bar": False, "enable_model_summary": False}


class WarmupModule(ClassificationModule):
    """A user's module with its own hooks: learning-rate warm-up in ``optimizer_step`` and a logged
    gradient norm. Merged, its hooks must run as they do alone."""

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        for group in optimizer.param_groups:
            group["lr"] = self.learning_rate * min(1.0, (self.global_step + 1) / 3)
        optimizer.step(closure=optimizer_closure)

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        norm = torch.stack([p.grad.norm() for p in self.parameters() if p.grad is not None]).norm()
        self.log("grad_norm", norm)


def data(dtype: torch.dtype) -> tuple[TensorDataset, TensorDataset]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(120, 8, dtype=dtype, generator=generator)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return TensorDataset(x[:96], y[:96]), TensorDataset(x[96:], y[96:])


def loaders(dtype: torch.dtype) -> dict[str, DataLoader]:
    train, val = data(dtype)
    return {"train_dataloaders": DataLoader(train, batch_size=32), "val_dataloaders": DataLoader(val, batch_size=10)}


def architectures(dtype: torch.dtype) -> list[nn.Module]:
    """Four different small classifiers of 8 features into 3 classes (one with batch norm)."""
    torch.manual_seed(0)
    models = [
        nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)),
        nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3)),
        nn.Sequential(nn.Linear(8, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 3)),
        nn.Sequential(nn.Linear(8, 3)),
    ]
    return [model.to(dtype) for model in models]


def same_architecture(dtype: torch.dtype, seeds: list[int]) -> list[nn.Module]:
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)).to(dtype))
    return models


def four_evaluators(dtype: torch.dtype, **trainer: Any) -> list[Lightning]:
    """Other optimizers, learning rates, weight decay and schedulers per model, one user module."""
    data_loaders = loaders(dtype)
    options = {"max_epochs": 2, **QUIET, **data_loaders, **trainer}
    step_decay = {"lr_scheduler": lambda opt: {"scheduler": torch.optim.lr_scheduler.ExponentialLR(opt, 0.9),
                                               "interval": "step"}}
    evaluators: list[Lightning] = [
        Classification(learning_rate=0.1, optimizer=torch.optim.SGD, **options),
        Classification(learning_rate=1e-2, **options),
        Classification(learning_rate=3e-3, weight_decay=0.01, optimizer=torch.optim.AdamW, **options),
        Lightning(WarmupModule(learning_rate=0.05, optimizer=torch.optim.SGD),
                  Trainer(max_epochs=2, **QUIET, **trainer), **data_loaders),
    ]
    evaluators[1].module.lr_scheduler = step_decay["lr_scheduler"]
    evaluators[2].module.lr_scheduler = lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    return evaluators


def max_difference(a: nn.Module, b: nn.Module) -> float:
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return max((x.double() - y.double()).abs().max().item() for x, y in pairs)


def identical(a: nn.Module, b: nn.Module) -> bool:
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return all(torch.equal(x, y) for x, y in pairs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_merged_training_is_bit_identical_to_training_alone(dtype: torch.dtype) -> None:
    """Four models, four training set-ups (and gradient clipping): merged, each model ends with the
    weights and reports the metrics (every epoch) it gets alone, exactly."""
    evaluators = four_evaluators(dtype, gradient_clip_val=0.5)
    models = architectures(dtype)
    solo = [copy.deepcopy(model) for model in models]
    merged = evaluate_model(MergedModel(models), merge_evaluators(evaluators))
    per_epoch = [split_multi_model_metric(value, 4) for value in merged.intermediates]
    assert len(per_epoch) == 2 and merged.final == merged.intermediates[-1]
    for index, (evaluator, model, alone) in enumerate(zip(evaluators, models, solo, strict=True)):
        assert max_difference(model, alone) > 1e-3  # it did train
        metrics = evaluate_model(alone, evaluator)
        assert identical(model, alone), f"model {index} differs from its solo run by {max_difference(model, alone)}"
        assert [epoch[index] for epoch in per_epoch] == metrics.intermediates
        assert split_multi_model_metric(merged.final)[index] == metrics.final
    assert merged.final["default"] == merged.final["model_0"]["default"]


def test_max_steps_and_accumulation_count_batches_as_for_one_model() -> None:
    """``max_steps`` stops inside an epoch and gradient accumulation spans batches, as alone."""
    data_loaders = loaders(torch.float64)
    evaluators = [Classification(learning_rate=lr, max_steps=4, accumulate_grad_batches=2, **QUIET, **data_loaders)
                  for lr in (0.05, 0.01)]
    models = architectures(torch.float64)[:2]
    solo = [copy.deepcopy(model) for model in models]
    evaluate_model(MergedModel(models), merge_evaluators(evaluators))
    for evaluator, model, alone in zip(evaluators, models, solo, strict=True):
        evaluate_model(alone, evaluator)
        assert identical(model, alone)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 2e-5), (torch.float64, 1e-13)])
def test_batched_models_match_training_alone_within_tolerance(dtype: torch.dtype, tolerance: float) -> None:
    """Three same-architecture models (other seeds, learning rates, weight decay) batched, next to a
    model of another architecture: each keeps its own optimizer, so each ends where it would alone
    (to rounding: vmap sums in another order), and the unbatched model bit for bit."""
    options = {"max_epochs": 2, **QUIET, **loaders(dtype)}
    evaluators = [Classification(learning_rate=lr, weight_decay=wd, **options)
                  for lr, wd in ((0.05, 0.0), (0.01, 0.01), (0.002, 0.0), (0.01, 0.0))]
    models = [*same_architecture(dtype, [1, 2, 3]), architectures(dtype)[1]]
    solo = [copy.deepcopy(model) for model in models]
    merged_model = MergedModel(models, batch_groups=[[0, 1, 2]])
    group = merged_model.groups[0]
    merged = evaluate_model(merged_model, merge_evaluators(evaluators))
    assert group.enabled and group.verified  # it did run batched
    assert all("forward" not in vars(model) for model in models)  # plain modules again after training
    for index, (evaluator, model, alone) in enumerate(zip(evaluators, models, solo, strict=True)):
        metrics = evaluate_model(alone, evaluator)
        scale = max(p.abs().max().item() for p in alone.parameters())
        assert max_difference(model, alone) <= tolerance * scale, index
        mine = split_multi_model_metric(merged.final)[index]
        assert mine["val_loss"] == pytest.approx(metrics.final["val_loss"], rel=tolerance * 10)
    assert identical(models[3], solo[3])


def test_batching_refuses_what_it_cannot_reproduce(caplog: pytest.LogCaptureFixture) -> None:
    """Batch norm (running statistics) and unequal parameters are refused up front; a forward that
    depends on more than the parameters is caught by the first-input check. Either way the models
    train merged without batching, bit for bit as alone."""
    norm = [nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4)) for _ in range(2)]
    assert "buffers" in (batching_refusal(norm) or "")
    assert "differ" in (batching_refusal([nn.Linear(8, 3), nn.Linear(8, 4)]) or "")

    class Scaled(nn.Module):
        def __init__(self, scale: float) -> None:
            super().__init__()
            self.fc, self.scale = nn.Linear(8, 3), scale

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) * self.scale  # a plain attribute: the template would use model 0's

    options = {"max_epochs": 1, **QUIET, **loaders(torch.float64)}
    evaluators = [Classification(learning_rate=0.05, **options) for _ in range(2)]
    torch.manual_seed(0)
    models = [Scaled(1.0).double(), Scaled(3.0).double()]
    solo = [copy.deepcopy(model) for model in models]
    merged_model = MergedModel(models, batch_groups=[[0, 1]])
    with caplog.at_level(logging.WARNING, "nasflow.evaluator.merged_model"):
        evaluate_model(merged_model, merge_evaluators(evaluators))
    assert not merged_model.groups and "disagrees" in caplog.text
    for evaluator, model, alone in zip(evaluators, models, solo, strict=True):
        evaluate_model(alone, evaluator)
        assert identical(model, alone)


def test_merging_refuses_what_would_not_be_exact() -> None:
    options = {"max_epochs": 1, **QUIET, **loaders(torch.float32)}

    class Manual(ClassificationModule):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False

    class Augmenting(ClassificationModule):
        def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
            return batch[0] * 2, batch[1]

    class SelfReporting(LightningModule):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return nn.functional.cross_entropy(self.model(batch[0]), batch[1])

    assert "manual optimization" in merge_refusal(Manual())
    assert "transforms its batches" in merge_refusal(Augmenting())
    assert "reports its metrics itself" in merge_refusal(SelfReporting())
    assert "ONNX" in merge_refusal(ClassificationModule(export_onnx=True))
    assert merge_refusal(ClassificationModule()) is None
    with pytest.raises(ValueError, match="callbacks"):
        check_mergeable([Classification(callbacks=[nasflow_callback()], **options)] * 2)
    with pytest.raises(ValueError, match="does not share"):
        check_mergeable([Classification(**options), Classification(**{**options, "max_epochs": 2})])
    assert not merge_evaluators([Classification(**options), Regression(**options)]).shares_data_with(
        Classification(**options))  # a classifier and a regressor on the same data merge
    with pytest.raises(ValueError, match="Model 1 cannot be trained merged: Manual"):
        MultiModelLightningModule([ClassificationModule(), Manual()])
    for kwargs in ({"accelerator": "gpu"}, {"strategy": "ddp"}, {"precision": "16-mixed"}):
        with pytest.raises(ValueError):
            MultiModelTrainer(max_epochs=1, **kwargs)


def nasflow_callback() -> Any:
    import lightning

    return lightning.pytorch.callbacks.EarlyStopping("val_acc", mode="max")


def test_a_module_reporting_inside_a_merged_trial_is_stopped() -> None:
    """A member that calls nasflow.report_* would report one model's value for all: it fails loudly."""

    class Sneaky(ClassificationModule):
        def on_validation_epoch_end(self) -> None:
            super().on_validation_epoch_end()
            nasflow.report_intermediate_result(0.5)

    module = MultiModelLightningModule([Sneaky(), Sneaky()])
    evaluator = Lightning(module, MultiModelTrainer(max_epochs=1, **QUIET), **loaders(torch.float32))
    with pytest.raises(RuntimeError, match="Sneaky reported a metric"):
        evaluate_model(MergedModel(same_architecture(torch.float32, [1, 2])), evaluator)


def test_input_goes_once_to_each_device_and_groups_keep_one_device() -> None:
    models = architectures(torch.float64)[:3]
    merged = MergedModel(models, device_map={0: "cpu", 1: "meta", 2: torch.device("meta")})
    seen: list[torch.Tensor] = []
    for model in merged.models:
        model.register_forward_pre_hook(lambda _module, args: seen.append(args[0]))
    x = torch.randn(4, 8, dtype=torch.float64)
    outputs = merged(x)
    assert [out.device.type for out in outputs] == ["cpu", "meta", "meta"]
    assert seen[0] is x and seen[1].device.type == "meta" and seen[2] is seen[1]  # one copy per device
    with pytest.raises(ValueError, match="one device"):
        MergedModel(same_architecture(torch.float32, [1, 2]), [[0, 1]], device_map={0: "cpu", 1: "meta"})
    shared = nn.Linear(8, 3)
    with pytest.raises(ValueError, match="must not share"):
        MultiModelLightningModule(ClassificationModule(), n_models=2).set_model([shared, shared])
