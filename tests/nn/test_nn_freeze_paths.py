"""Raw (in place) and simplified (rebuild) freezing agree, nest, and raw keeps weights."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

import nasflow
from nasflow.mutable import ExpressionConstraint
from nasflow.nn import Cell, InputChoice, LayerChoice, ModelSpace, MutableLinear, ParametrizedModule, Repeat
from nasflow.space import RawFormatModelSpace, SimplifiedModelSpace


class Scaled(ParametrizedModule):
    def __init__(self, width: int, factor: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * self.factor


class Rich(ModelSpace, label_prefix="rich"):
    """Every module kind, nested, with explicit and automatic labels."""

    def __init__(self, in_dim: int = 6, classes: int = 3) -> None:
        super().__init__()
        width = nasflow.choice("width", [8, 12])
        hidden = nasflow.choice("hidden", [4, 16])
        self.stem = MutableLinear(in_dim, width)
        self.act = LayerChoice({"relu": nn.ReLU(), "gelu": nn.GELU(), "tanh": nn.Tanh()}, label="act")

        def deep_block(index: int) -> nn.Module:  # a choice inside a Repeat inside a LayerChoice
            return nn.Sequential(
                MutableLinear(width, hidden), LayerChoice([nn.ReLU(), nn.Identity()]), MutableLinear(hidden, width)
            )

        self.body = LayerChoice(
            [
                Repeat(deep_block, (1, 3), label="deep"),
                nn.Sequential(MutableLinear(width, width), nn.ReLU(), MutableLinear(width, width)),
                Scaled(width, nasflow.choice("factor", [1, 2])),
            ],
            label="body",
        )
        self.branches = nn.ModuleList([MutableLinear(width, width) for _ in range(3)])
        self.merge = InputChoice(3, 2, "sum", label="merge")
        self.cell = Cell([lambda: MutableLinear(width, width), nn.Identity()], num_nodes=2, merge_op="all")
        self.tail = Repeat(lambda i: nn.Linear(2, 2), (0, 2))  # automatic label, never run
        self.head = MutableLinear(width * 2, classes)
        self.proj = nn.Sequential(MutableLinear(classes, classes))  # no mutable argument: still nn.Linear when frozen
        self.extra = LayerChoice([nn.Linear(classes, classes), nn.Dropout(0.0)])  # automatic label

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(self.act(self.stem(x)))
        x = self.merge([branch(x) for branch in self.branches])
        return self.extra(self.proj(self.head(self.cell(x))))


def architecture(model: nn.Module) -> dict[str, list]:
    """What makes two models the same architecture: module names and types, tensor shapes."""
    return {
        "modules": [(name, type(m).__qualname__) for name, m in model.named_modules()],
        "parameters": [(name, tuple(p.shape)) for name, p in model.named_parameters()],
        "buffers": [(name, tuple(b.shape)) for name, b in model.named_buffers()],
    }


def test_rich_space_labels() -> None:
    labels = Rich().simplify()
    assert labels.keys() == Rich().simplify().keys()  # automatic labels are reproducible
    # explicit labels sit under the space's prefix (NNI's label_prefix)
    assert {f"rich/{name}" for name in ("width", "hidden", "act", "body", "deep", "factor", "merge")} <= labels.keys()
    # unlabelled LayerChoices made by the Repeat's factory are numbered under the depth's label
    assert {"rich/deep/1", "rich/deep/2", "rich/deep/3"} <= labels.keys()
    # other unlabelled modules are numbered in construction order; the Cell is a scope of its own
    assert [k for k in labels if k.count("/") == 1 and k[5:].isdigit() or k.startswith("rich/1/")] == [
        "rich/1/op_1_0", "rich/1/op_2_0", "rich/1/input_1_0", "rich/1/input_2_0", "rich/2", "rich/3"
    ]
    assert labels["rich/2"].values == [0, 1, 2] and labels["rich/3"].values == [0, 1]


def test_raw_and_simplified_give_the_same_architecture() -> None:
    space = Rich()
    raw = RawFormatModelSpace.from_model(space)
    simplified = SimplifiedModelSpace.from_model(space)
    assert raw.simplify().keys() == simplified.simplify().keys() == space.simplify().keys()
    rng = random.Random(2024)
    x = torch.randn(5, 6)
    seen = set()
    for _ in range(25):
        sample = {label: m.random(random_state=rng) for label, m in space.simplify().items()}
        seen.add((sample["rich/body"], sample["rich/width"]))
        models = [
            space.freeze(sample),
            space.rebuild(sample),
            raw.freeze(sample).executable_model(),
            simplified.freeze(sample).executable_model(),
        ]
        reference = architecture(models[0])
        assert all(architecture(m) == reference for m in models[1:]), sample
        assert not any(t in {"MutableLinear", "LayerChoice", "Repeat", "InputChoice"} for _, t in reference["modules"])
        for model in models:
            assert model.eval()(x).shape == (5, 3)
            assert model.simplify() == {}
    assert len(seen) == 6  # every body kind with every width was exercised


@pytest.mark.parametrize(("depth", "hidden", "width"), [(1, 4, 8), (3, 16, 12)])
def test_nested_choice_in_repeat_in_layer_choice(depth: int, hidden: int, width: int) -> None:
    space = Rich()
    sample = {label: m.default() for label, m in space.simplify().items()}
    sample.update({"rich/body": 0, "rich/deep": depth, "rich/hidden": hidden, "rich/width": width})
    sample.update({f"rich/deep/{i}": 1 for i in (1, 2, 3)})
    for model in (space.freeze(sample), space.rebuild(sample)):
        assert isinstance(model.body, nn.Sequential) and len(model.body) == depth
        for block in model.body:
            assert block[0].weight.shape == (hidden, width) and block[2].weight.shape == (width, hidden)
            assert type(block[1]) is nn.Identity


def test_raw_freeze_keeps_weights() -> None:
    space = Rich()
    defaults = {label: m.default() for label, m in space.simplify().items()}
    sample = {**defaults, "rich/body": 1, "rich/3": 0}
    frozen = space.freeze(sample)
    # a plain Linear kept from a LayerChoice: identical parameters, but a copy
    assert torch.equal(frozen.extra.weight, space.extra[0].weight)
    assert frozen.extra.weight is not space.extra[0].weight
    # MutableLinear with the default width: now a plain Linear, same weights
    assert type(frozen.stem) is nn.Linear and torch.equal(frozen.stem.weight, space.stem.weight)
    assert torch.equal(frozen.body[0].weight, space.body[1][0].weight)
    assert torch.equal(frozen.branches[2].bias, space.branches[2].bias)
    with torch.no_grad():
        frozen.stem.weight.add_(1.0)
    assert not torch.equal(frozen.stem.weight, space.stem.weight)
    # a different width: new shapes, so fresh weights
    wider = space.freeze({**sample, "rich/width": 12})
    assert wider.stem.weight.shape == (12, 6)
    # rebuilding never keeps weights
    assert not torch.equal(space.rebuild(sample).stem.weight, space.stem.weight)
    # the raw format keeps them too
    raw_model = RawFormatModelSpace.from_model(space).freeze(sample).executable_model()
    assert torch.equal(raw_model.extra.weight, space.extra[0].weight)


def test_space_default_random_and_grid_give_frozen_models() -> None:
    class Small(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.op = LayerChoice([nn.Linear(2, 2), nn.Identity(), nn.Tanh()], label="op")
            self.rep = Repeat(lambda i: MutableLinear(2, 2), (0, 2), label="rep")

    space = Small()
    models = list(space.grid())
    assert len(models) == 3 * 3
    assert len({(type(m.op).__name__, len(m.rep)) for m in models}) == 9
    assert {m.frozen_sample["rep"] for m in models} == {0, 1, 2}
    default = space.default()
    assert type(default.op) is nn.Linear and len(default.rep) == 0
    first = space.random(random_state=random.Random(5))
    again = space.random(random_state=random.Random(5))
    assert first.frozen_sample == again.frozen_sample


def test_frozen_space_cannot_be_frozen_again_by_a_format() -> None:
    space = Rich()
    defaults = {label: m.default() for label, m in space.simplify().items()}
    with pytest.raises(ValueError, match="already a frozen model"):
        SimplifiedModelSpace.from_model(space.rebuild(defaults))
    raw_model = RawFormatModelSpace.from_model(space).freeze(defaults)
    with pytest.raises(RuntimeError, match="already frozen .*not initialized.*freeze the space"):
        raw_model.freeze({})


def _reachable(root: object) -> list[object]:
    """Objects reachable from ``root`` through modules, containers and instance dicts (not code)."""
    import gc

    seen, stack, found = set(), [root], []
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        found.append(obj)
        if isinstance(obj, (nn.Module, dict, list, tuple, set)):
            stack.extend(gc.get_referents(obj))
    return found


def test_raw_frozen_model_holds_nothing_of_the_space() -> None:
    space = Rich()
    sample = {label: m.default() for label, m in space.simplify().items()}
    frozen = space.freeze({**sample, "rich/body": 1})
    reachable = _reachable(frozen)
    leftovers = [
        type(o).__name__
        for o in reachable
        if isinstance(o, nasflow.mutable.Mutable) and o is not frozen and not isinstance(o, Cell)  # Cell stays a Cell
    ]
    assert leftovers == []  # no unchosen candidate, MutableLinear or choice hides in the frozen model
    space_tensors = {id(p) for p in space.parameters()}
    assert not any(id(o) in space_tensors for o in reachable)


class Budgeted(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        a, b = nasflow.choice("a", [1, 2, 3]), nasflow.choice("b", [1, 2, 3])
        self.l1 = MutableLinear(2, a)
        self.l2 = MutableLinear(a, b)
        self.keep = nn.Linear(3, 3)
        self.add_mutable(ExpressionConstraint(a + b <= 3, label="budget"))


def test_constraint_in_a_space_filters_and_keeps_raw_weights() -> None:
    space = Budgeted()
    assert list(space.simplify()) == ["a", "b", "budget"]
    models = list(space.grid())
    assert sorted((m.frozen_sample["a"], m.frozen_sample["b"]) for m in models) == [(1, 1), (1, 2), (2, 1)]
    rng = random.Random(1)
    assert all(space.random(random_state=rng).l2.out_features <= 2 for _ in range(20))
    frozen = space.freeze({"a": 1, "b": 2})
    assert frozen.l2.weight.shape == (2, 1)
    # the constraint only checks the sample, so the raw freeze still keeps the weights
    assert torch.equal(frozen.keep.weight, space.keep.weight)
    assert torch.equal(frozen.l1.weight, space.l1.weight)  # default a=1: same shape, same weights
    with pytest.raises(nasflow.mutable.ConstraintViolation, match="is not satisfied \\(constraint 'budget'\\)"):
        space.freeze({"a": 3, "b": 3})


class Tuned(ModelSpace):
    """A space that changes its layers after building them, as users tune BatchNorm or freeze weights."""

    def __init__(self) -> None:
        super().__init__()
        width = nasflow.choice("width", [4, 8])
        self.fc = MutableLinear(3, width)
        self.bn = nasflow.nn.MutableBatchNorm1d(width)
        self.bn.eps, self.bn.momentum = 0.5, 0.9
        self.head = MutableLinear(width, 2)
        self.head.weight.requires_grad_(False)
        self.scaled = Scaled(2, nasflow.choice("factor", [2, 3]))
        self.scaled.fc.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scaled(self.head(self.bn(self.fc(x))))


@pytest.mark.parametrize("sample", [{"width": 4, "factor": 2}, {"width": 8, "factor": 3}])
def test_raw_freeze_keeps_what_the_space_changed_after_building_a_layer(sample: dict) -> None:
    raw = RawFormatModelSpace.from_model(Tuned()).freeze(sample).executable_model()
    rebuilt = SimplifiedModelSpace.from_model(Tuned()).freeze(sample).executable_model()
    for model in (raw, rebuilt):
        assert (model.bn.eps, model.bn.momentum) == (0.5, 0.9)
        assert model.bn.num_features == sample["width"]  # derived from the sample, not carried over
        assert not model.head.weight.requires_grad and model.head.bias.requires_grad
        assert not model.scaled.fc.bias.requires_grad and model.scaled.factor == sample["factor"]
    rebuilt.load_state_dict(raw.state_dict())
    x = torch.randn(16, 3)
    assert torch.equal(raw(x), rebuilt(x))  # training mode: eps and momentum both matter
    assert torch.equal(raw.bn.running_mean, rebuilt.bn.running_mean)
