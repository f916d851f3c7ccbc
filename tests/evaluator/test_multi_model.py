"""Multi-model (CGO) training: merged models end exactly where each would alone; metrics per model."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import cloudpickle
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from nasflow.evaluator import (
    Classification,
    DataLoader,
    Lightning,
    MergedModel,
    MultiModelLightningModule,
    MultiModelTrainer,
    TrainingConfig,
    evaluate_model,
    merge_evaluators,
    split_multi_model_metric,
)
from nasflow.evaluator.classification import build_criterion
from nasflow.evaluator.metrics import accuracy

pytestmark = pytest.mark.filterwarnings("ignore:.*does not have many workers", "ignore:.*treespec")

QUIET: dict[str, Any] = {
    "logger": False, "enable_progress_bar": False, "enable_checkpointing": False, "enable_model_summary": False,
}


def architectures() -> list[nn.Module]:
    """Four different small float64 classifiers of 8 features into 3 classes (one with batch norm)."""
    torch.manual_seed(0)
    models = [
        nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)),
        nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3)),
        nn.Sequential(nn.Linear(8, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 3)),
        nn.Sequential(nn.Linear(8, 3)),
    ]
    return [model.double() for model in models]


def configs() -> list[TrainingConfig]:
    """A different optimizer, learning rate and schedule per model: they must stay separate."""
    metrics = {"acc": accuracy}
    return [
        TrainingConfig(optimizer=torch.optim.SGD, learning_rate=0.1, optimizer_kwargs={"momentum": 0.9},
                       metrics=metrics),
        TrainingConfig(optimizer=torch.optim.Adam, learning_rate=1e-2, metrics=metrics),
        TrainingConfig(optimizer=torch.optim.SGD, learning_rate=0.05, weight_decay=1e-3, metrics=metrics,
                       lr_scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)),
        TrainingConfig(optimizer=torch.optim.AdamW, learning_rate=3e-3, weight_decay=0.01, metrics=metrics,
                       lr_scheduler=lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, 0.9),
                       lr_scheduler_interval="step"),
    ]


def data() -> tuple[TensorDataset, TensorDataset]:
    torch.manual_seed(1)
    x = torch.randn(120, 8, dtype=torch.float64)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return TensorDataset(x[:96], y[:96]), TensorDataset(x[96:], y[96:])


def train_alone(model: nn.Module, config: TrainingConfig, loader: Any, max_steps: int) -> None:
    """The reference: a plain PyTorch loop over the same batches."""
    optimizer = config.optimizer(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay,
                                 **config.optimizer_kwargs)
    scheduler = config.lr_scheduler(optimizer) if config.lr_scheduler is not None else None
    criterion = build_criterion(config.criterion)
    steps = 0
    model.train()
    while steps < max_steps:
        for x, y in loader:
            optimizer.zero_grad()
            criterion(model(x), y).backward()
            optimizer.step()
            steps += 1
            if scheduler is not None and config.lr_scheduler_interval == "step":
                scheduler.step()
            if steps == max_steps:
                break
        if scheduler is not None and config.lr_scheduler_interval == "epoch":
            scheduler.step()


def max_difference(a: nn.Module, b: nn.Module) -> float:
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return max((x.double() - y.double()).abs().max().item() for x, y in pairs)


@pytest.mark.parametrize("n_models, limit", [(2, {"max_epochs": 2}), (3, {"max_epochs": 2}), (4, {"max_steps": 5})])
def test_merged_training_equals_training_alone(n_models: int, limit: dict[str, int]) -> None:
    models = architectures()[:n_models]
    initial = [copy.deepcopy(model) for model in models]
    train, val = data()
    loader = DataLoader(train, batch_size=32)  # 3 batches an epoch; max_steps=5 stops inside epoch 2
    module = MultiModelLightningModule(configs=configs()[:n_models])
    evaluator = Lightning(module, MultiModelTrainer(**limit, **QUIET), loader, DataLoader(val, batch_size=10))
    metrics = evaluate_model(MergedModel(models), evaluator)
    steps = limit.get("max_steps") or 3 * limit["max_epochs"]
    for index, (model, alone) in enumerate(zip(models, initial, strict=True)):
        assert max_difference(model, alone) > 1e-3  # it did train
        train_alone(alone, configs()[index], loader, steps)
        assert max_difference(model, alone) < 1e-5, f"model {index} diverged from its solo training"
    per_model = split_multi_model_metric(metrics.final, n_models)
    assert len(per_model) == n_models and metrics.final["default"] == per_model[0]["default"]
    assert all(set(value) == {"default", "val_acc", "val_loss"} for value in per_model)
    assert metrics.final == metrics.intermediates[-1]
    if "max_steps" in limit:
        return  # stopped inside an epoch: the last validation ran on earlier weights
    with torch.no_grad():
        for model, value in zip(models, per_model, strict=True):
            model.eval()
            x, y = val.tensors
            assert value["val_acc"] == pytest.approx(accuracy(model(x), y).item())


def test_merged_classification_evaluators_match_their_solo_runs() -> None:
    train, val = data()
    loaders = {"train_dataloaders": DataLoader(train, batch_size=32), "val_dataloaders": DataLoader(val, batch_size=8)}
    options = {"max_epochs": 2, **QUIET, **loaders}
    evaluators = [Classification(learning_rate=0.1, optimizer=torch.optim.SGD, **options),
                  Classification(learning_rate=1e-2, **options),
                  Classification(learning_rate=3e-3, weight_decay=0.01, optimizer=torch.optim.AdamW, **options)]
    models = architectures()[:3]
    solo = [copy.deepcopy(model) for model in models]
    merged = merge_evaluators(evaluators)
    assert merged.shares_data_with(evaluators[0]) is False  # its trainer is a MultiModelTrainer
    merged = cloudpickle.loads(cloudpickle.dumps(merged))  # as a merged trial travels to a worker
    merged_metrics = evaluate_model(MergedModel(models), merged)
    for index, (evaluator, model, alone) in enumerate(zip(evaluators, models, solo, strict=True)):
        solo_metrics = evaluate_model(alone, evaluator)
        assert max_difference(model, alone) < 1e-5
        mine = split_multi_model_metric(merged_metrics.final)[index]
        assert mine["val_acc"] == solo_metrics.final["val_acc"]
        assert mine["val_loss"] == pytest.approx(solo_metrics.final["val_loss"], abs=1e-9)
        per_epoch = [split_multi_model_metric(value)[index]["default"] for value in merged_metrics.intermediates]
        assert per_epoch == [value["default"] for value in solo_metrics.intermediates]


def test_merging_refuses_evaluators_that_do_not_share_data() -> None:
    train, val = data()
    a = Classification(train_dataloaders=DataLoader(train, batch_size=32), val_dataloaders=DataLoader(val),
                       max_epochs=1, **QUIET)
    b = Classification(train_dataloaders=DataLoader(train, batch_size=16), val_dataloaders=DataLoader(val),
                       max_epochs=1, **QUIET)
    with pytest.raises(ValueError, match="does not share"):
        merge_evaluators([a, b])


def test_batch_goes_once_to_each_device_of_the_device_map() -> None:
    models = architectures()[:3]
    merged = MergedModel(models, device_map={0: "cpu", 1: "meta", 2: torch.device("meta")})
    seen: list[torch.Tensor] = []
    for model in merged.models:
        model.register_forward_pre_hook(lambda _module, args: seen.append(args[0]))
    x = torch.randn(4, 8, dtype=torch.float64)
    outputs = merged(x)
    assert [out.device.type for out in outputs] == ["cpu", "meta", "meta"]
    assert seen[0] is x and seen[1].device.type == "meta" and seen[2] is seen[1]  # one copy per device
    module = MultiModelLightningModule([nn.Linear(8, 3), nn.Linear(8, 3)], TrainingConfig(), device_map={1: "meta"})
    assert next(module.model.models[1].parameters()).device.type == "meta" and module.n_models == 2


def test_parameters_must_belong_to_exactly_one_model() -> None:
    shared = nn.Linear(8, 3)
    with pytest.raises(ValueError, match="must not share"):
        MultiModelLightningModule([shared, shared])

    class Partial(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.stem = nn.Linear(8, 3), nn.Linear(8, 3), nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = self.stem(x)
            return self.a(h), self.b(h)

        def parameter_groups(self) -> list[list[nn.Parameter]]:
            return [list(self.a.parameters()), list(self.b.parameters())]

    with pytest.raises(ValueError, match="stem.weight"):
        MultiModelLightningModule(Partial())
    with pytest.raises(TypeError, match="parameter_groups"):
        MultiModelLightningModule(nn.Linear(8, 3))
    with pytest.raises(ValueError, match="2 models"):
        MultiModelLightningModule([nn.Linear(8, 3), nn.Linear(8, 3)], [TrainingConfig()] * 3)


def test_trainer_refuses_settings_that_break_placement_or_exactness() -> None:
    for kwargs in ({"accelerator": "gpu"}, {"strategy": "ddp"}, {"accumulate_grad_batches": 2},
                   {"precision": "16-mixed"}):
        with pytest.raises(ValueError):
            MultiModelTrainer(max_epochs=1, **QUIET, **kwargs)
    trainer = MultiModelTrainer(max_epochs=1, gradient_clip_val=0.5, **QUIET)
    assert trainer.multi_model_gradient_clip == (0.5, None) and trainer.trace_kwargs["gradient_clip_val"] == 0.5


def test_gradient_clipping_is_per_model() -> None:
    train, val = data()
    loader = DataLoader(train, batch_size=32)
    models = architectures()[:2]
    solo = [copy.deepcopy(model) for model in models]
    config = TrainingConfig(optimizer=torch.optim.SGD, learning_rate=0.5)
    evaluator = Lightning(MultiModelLightningModule(configs=config),
                          MultiModelTrainer(max_steps=3, gradient_clip_val=0.05, **QUIET), loader, DataLoader(val))
    evaluate_model(MergedModel(models), evaluator)
    clip: Callable[[nn.Module], None] = lambda m: nn.utils.clip_grad_norm_(m.parameters(), 0.05)
    for model, alone in zip(models, solo, strict=True):
        optimizer = torch.optim.SGD(alone.parameters(), lr=0.5)
        for x, y in list(loader)[:3]:
            optimizer.zero_grad()
            nn.functional.cross_entropy(alone(x), y).backward()
            clip(alone)
            optimizer.step()
        assert max_difference(model, alone) < 1e-5
