"""Raw and simplified formats: what a frozen model holds, pickling, evaluator mutables."""

from __future__ import annotations

import copy
import pickle

import cloudpickle
import pytest
import torch
from torch import nn

import nasflow
from nasflow.evaluator import FunctionalEvaluator, evaluate_model
from nasflow.nn import LayerChoice, ModelSpace, MutableLinear
from nasflow.space import ModelStatus, RawFormatModelSpace, SimplifiedModelSpace


class Net(ModelSpace):
    def __init__(self, in_dim: int, classes: int = 2) -> None:
        super().__init__()
        self.fc = MutableLinear(in_dim, nasflow.choice("width", [4, 8]))
        self.act = LayerChoice([nn.ReLU(), nn.Tanh()], label="act")
        self.head = MutableLinear(nasflow.choice("width", [4, 8]), classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.fc(x)))


def train(model: nn.Module, lr: float, epochs: int) -> None:
    nasflow.report_intermediate_result(lr)
    nasflow.report_final_result(lr * epochs + model(torch.zeros(1, 3)).shape[1])


def evaluator() -> FunctionalEvaluator:
    return FunctionalEvaluator(train, lr=nasflow.choice("lr", [0.1, 0.01]), epochs=3)


@pytest.mark.parametrize("fmt", [SimplifiedModelSpace, RawFormatModelSpace])
def test_evaluator_mutables_are_part_of_the_space_and_frozen(fmt: type) -> None:
    space = fmt.from_model(Net(3, classes=5), evaluator())
    assert list(space.simplify()) == ["width", "act", "lr"]
    assert space.status is ModelStatus.Initialized and space.sample is None
    model = space.freeze({"width": 8, "act": 1, "lr": 0.01})
    assert model.status is ModelStatus.Frozen and model.sample == {"width": 8, "act": 1, "lr": 0.01}
    assert model.evaluator.arguments == {"lr": 0.01, "epochs": 3}
    assert list(model.evaluator.simplify()) == []
    module = model.executable_model()
    assert module.fc.weight.shape == (8, 3) and type(module.act) is nn.Tanh
    metrics = evaluate_model(model)
    assert metrics.intermediates == [0.01] and metrics.final == pytest.approx(0.03 + 5)
    with pytest.raises(nasflow.mutable.SampleMissingError, match="'lr' is missing"):
        space.freeze({"width": 8, "act": 1})


def test_simplified_model_holds_only_its_sample() -> None:
    space = SimplifiedModelSpace.from_model(Net(3))
    model = space.freeze({"width": 4, "act": 0, "unrelated": 1})
    assert model.sample == {"width": 4, "act": 0}  # labels outside the space are dropped
    assert model.constructor is space.constructor  # shared, not copied per model
    assert not hasattr(model, "__dict__")
    assert "status=ModelStatus.Frozen" in repr(model) and "'width': 4" in repr(model)
    first, second = model.executable_model(), model.executable_model()
    assert first is not second and first.fc.weight.shape == second.fc.weight.shape == (4, 3)
    model.metrics.set_final(0.5)
    assert model.metric == 0.5 and space.metric is None


def test_simplified_payload_round_trip_in_process() -> None:
    space = SimplifiedModelSpace.from_model(Net(3, classes=7), evaluator())
    model = space.freeze({"width": 8, "act": 0, "lr": 0.1})
    model.model_id = 12
    payload = model.to_payload()
    assert isinstance(payload, bytes) and len(payload) < 20_000
    loaded = SimplifiedModelSpace.from_payload(payload)
    assert loaded.sample == model.sample and loaded.model_id == 12 and loaded.status is ModelStatus.Frozen
    assert loaded.evaluator.arguments == {"lr": 0.1, "epochs": 3}
    rebuilt = loaded.executable_model()
    assert type(rebuilt) is Net and rebuilt.head.weight.shape == (7, 8) and type(rebuilt.act) is nn.ReLU
    assert list(loaded.model_space.simplify()) == ["width", "act"]  # the space is rebuilt on demand
    with pytest.raises(TypeError, match="holds a dict, not a SimplifiedModelSpace"):
        SimplifiedModelSpace.from_payload(cloudpickle.dumps({"not": "a model"}))


def test_raw_format_refuses_pickling_with_a_clear_message() -> None:
    space = RawFormatModelSpace.from_model(Net(3))
    model = space.freeze({"width": 4, "act": 1})
    for obj in (space, model):
        for dumps in (pickle.dumps, cloudpickle.dumps):
            with pytest.raises(TypeError) as info:
                dumps(obj)
            message = str(info.value)
            assert "raw-format model cannot leave this process" in message
            assert "Use the simplified or graph format" in message
    twin = copy.deepcopy(model)  # copying inside the process is fine, weights included
    assert torch.equal(twin.executable_model().fc.weight, model.executable_model().fc.weight)
    assert twin.sample == model.sample and twin.status is ModelStatus.Frozen


def test_raw_format_keeps_the_space_weights() -> None:
    net = Net(3)
    model = RawFormatModelSpace.from_model(net).freeze({"width": 4, "act": 0})
    module = model.executable_model()
    assert type(module.fc) is nn.Linear and torch.equal(module.fc.weight, net.fc.weight)
    assert torch.equal(module.head.bias, net.head.bias)
    with pytest.raises(TypeError, match="takes no options"):
        RawFormatModelSpace.from_model(net, None, engine="x")


def test_simplified_models_stay_under_two_kilobytes_each() -> None:
    """The benchmark's budget (benchmarks/space_memory.py), checked on fewer models to stay fast."""
    import gc
    import random
    import tracemalloc

    class Twenty(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList(
                [LayerChoice([nn.ReLU(), nn.Tanh(), nn.GELU()], label=f"c{i}") for i in range(20)]
            )

    space = SimplifiedModelSpace.from_model(Twenty())
    rng = random.Random(0)
    samples = [{f"c{i}": rng.randrange(3) for i in range(20)} for _ in range(1000)]
    space.freeze(samples[0])
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        models = [space.freeze(sample) for sample in samples]
        gc.collect()
        per_model = (tracemalloc.get_traced_memory()[0] - before) / len(models)
    finally:
        tracemalloc.stop()
    assert per_model < 2048, f"{per_model:.0f} bytes per simplified model"
