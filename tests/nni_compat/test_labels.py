"""NNI 3.0's label rules: label_scope, auto_label, ModelSpace's label_prefix, and NNI samples."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

import nasflow
from nasflow.mutable import Categorical, auto_label, label_scope, reset_uid
from nasflow.nn import Cell, InputChoice, LayerChoice, ModelSpace, MutableConv2d, MutableLinear, Repeat
from nasflow.nn.base import strict_label_scope
from nasflow.space import SimplifiedModelSpace


def test_label_scope_docstring_example() -> None:
    with label_scope("model"):
        label1, label2, label3 = auto_label(), auto_label(), auto_label("foo")
        with label_scope():
            label4, label5 = auto_label(), auto_label()
        with label_scope("another"):
            label6 = auto_label()
        with label_scope("model"):
            label7 = auto_label()
    with label_scope("model"):
        label8 = auto_label()
    assert [label1, label2, label3, label4, label5, label6, label7, label8] == [
        "model/1", "model/2", "model/foo", "model/3/1", "model/3/2", "model/another/1", "model/model/1", "model/1"
    ]


def test_auto_label_outside_scopes_uses_global_numbering(caplog: pytest.LogCaptureFixture) -> None:
    reset_uid("global")
    assert auto_label("bar") == "bar"
    with caplog.at_level(logging.WARNING):
        assert auto_label() == "global/1"
        with label_scope() as scope:
            assert scope.name == "global/2"
            assert auto_label() == "global/2/1"
    assert "numbering" in caplog.text
    with label_scope("another"):
        assert [auto_label(), auto_label("thing"), auto_label()] == ["another/1", "another/thing", "another/2"]


def test_a_label_is_a_str_that_is_not_prefixed_twice() -> None:
    with label_scope("outer"):
        made = auto_label("x")
        with label_scope("inner"):
            assert auto_label(made) == "outer/x"  # already complete
            assert Categorical([1, 2], label=made).label == "outer/x"
    assert isinstance(made, str) and made.parts == ["outer", "x"]
    with label_scope("a") as first, label_scope("a") as second:
        assert first != second and second.name == "a/a"


def test_strict_scope_needs_explicit_labels() -> None:
    with strict_label_scope("_unused_"):
        with pytest.raises(ValueError, match="Label must be specified"):
            Categorical([1, 2, 3])
        assert Categorical([1, 2, 3], label="x").label == "x"
        with label_scope("hello"):
            assert auto_label() == "hello/1"
            assert Categorical([1, 2, 3], label="x").label == "hello/x"


def test_label_prefix_scopes_explicit_labels() -> None:
    class MyModelSpace(ModelSpace, label_prefix="backbone"):
        def __init__(self) -> None:
            super().__init__()
            self.choice = self.add_mutable(nasflow.choice("depth", [2, 3, 4]))

    assert MyModelSpace().choice.label == "backbone/depth"


def test_without_prefix_labels_are_kept_and_required() -> None:
    class Plain(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.a = self.add_mutable(Categorical([1, 2, 3], label="a"))

    assert Plain().a.label == "a"

    class Unlabelled(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.lc = LayerChoice([nn.ReLU(), nn.Tanh()])

    with pytest.raises(ValueError, match="Label must be specified manually"):
        Unlabelled()

    class Empty(ModelSpace, label_prefix=""):
        pass

    with pytest.raises(ValueError, match="be empty"):
        Empty()


def test_prefix_belongs_to_the_class_that_declares_it() -> None:
    class Base(ModelSpace):
        def __init__(self, a: int, b: int = 1) -> None:
            super().__init__()
            self.d = self.add_mutable(Categorical([4, 5, 6], label="d"))

    class Derived(Base, label_prefix="model2"):
        def __init__(self, c: int = 2) -> None:
            super().__init__(c, b=3)
            self.c = self.add_mutable(Categorical([1, 2, 3], label="c"))

    class Plain(Base):
        def __init__(self) -> None:
            super().__init__(1)
            self.c = self.add_mutable(Categorical([1, 2, 3], label="c"))

    model = Derived(5)
    assert (model.c.label, model.d.label) == ("model2/c", "model2/d")
    assert (Plain().c.label, Plain().d.label) == ("c", "d")


def test_nested_spaces_compose_their_prefixes() -> None:
    class Inner(ModelSpace, label_prefix="model1"):
        def __init__(self) -> None:
            super().__init__()
            self.d = self.add_mutable(Categorical([4, 5, 6], label="d"))

    class NoPrefix(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.a = self.add_mutable(Categorical([1, 2, 3], label="a"))
            with pytest.raises(ValueError, match="must be specified"):
                Categorical([1, 2, 3])

    class Outer(ModelSpace, label_prefix="model2"):
        def __init__(self) -> None:
            super().__init__()
            self.s = Inner()
            self.n = NoPrefix()
            self.c = self.add_mutable(Categorical([1, 2, 3], label="c"))
            self.b = self.add_mutable(Categorical([1, 2, 3]))

    model = Outer()
    assert (model.c.label, model.s.d.label, model.n.a.label, model.b.label) == (
        "model2/c", "model2/model1/d", "model2/a", "model2/1")


class Inner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net1 = LayerChoice([nn.Linear(10, 10), nn.Linear(10, 10, bias=False)])
        self.net2 = LayerChoice([nn.Linear(10, 10), nn.Linear(10, 10, bias=False)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net2(self.net1(x))


class Nested(ModelSpace, label_prefix="model"):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = Inner()
        self.fc2 = LayerChoice([nn.Linear(10, 10), nn.Linear(10, 10, bias=False)])
        self.fc3 = Inner()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.fc2(self.fc1(x)))


def test_automatic_labels_count_in_construction_order_and_repeat() -> None:
    for _ in range(2):  # a second instance gets the same labels
        model = Nested()
        assert [model.fc1.net1.label, model.fc1.net2.label, model.fc2.label, model.fc3.net1.label,
                model.fc3.net2.label] == ["model/1", "model/2", "model/3", "model/4", "model/5"]


class Searched(ModelSpace, label_prefix="model"):
    """Labels of every kind: explicit, automatic, a Cell scope, a Repeat, a shared choice."""

    def __init__(self) -> None:
        super().__init__()
        kernel = nasflow.choice("kernel", [1, 3])
        self.lc = LayerChoice([nn.Conv2d(3, 4, 1), MutableConv2d(3, 4, kernel, padding="same")], label="lc")
        self.skip = InputChoice(2, 1)
        self.cell = Cell([nn.Identity(), nn.ReLU()], num_nodes=2, label="cell")
        self.blocks = Repeat(lambda i: LayerChoice([nn.Identity(), nn.Tanh()]), (1, 2), label="depth")
        self.head = MutableLinear(8, nasflow.choice("shared", [4, 6]))
        self.aux = MutableLinear(8, nasflow.choice("shared", [4, 6]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lc(x)
        h = self.skip([h, torch.zeros_like(h)])
        h = self.blocks(self.cell(h))
        return self.head(h.mean((2, 3))) + self.aux(h.mean((2, 3)))


NNI_SAMPLE = {  # what NNI 3.0 prints for Searched().simplify() and a strategy's sample of it
    "model/kernel": 3, "model/lc": 1, "model/1": [1],
    "model/cell/input_1_0": [0], "model/cell/op_1_0": "1", "model/cell/input_2_0": [1], "model/cell/op_2_0": "0",
    "model/depth": 2, "model/depth/1": 1, "model/depth/2": 0, "model/shared": 6,
}


def test_simplify_lists_nni_labels() -> None:
    assert set(Searched().simplify()) == set(NNI_SAMPLE)


def test_a_sample_with_nni_labels_freezes_the_same_architecture() -> None:
    space = Searched()
    x = torch.randn(2, 3, 5, 5)
    simplified = SimplifiedModelSpace.from_model(space)
    for model in (space.freeze(NNI_SAMPLE), simplified.freeze(NNI_SAMPLE).executable_model()):
        assert type(model.lc) is nn.Conv2d and model.lc.kernel_size == (3, 3)
        assert model.skip.chosen == [1]
        assert [type(op).__name__ for node in model.cell.ops for op in node] == ["ReLU", "Identity"]
        assert [type(b).__name__ for b in model.blocks] == ["Tanh", "Identity"]
        assert model.head.out_features == model.aux.out_features == 6
        assert model(x).shape == (2, 6)
