"""nni.nas.nn.pytorch as NNI 3.0 documents it: choices, cells, repeats, parametrized modules, spaces."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import nasflow
import nasflow.nn.layers as layers
from nasflow.mutable import Categorical, SampleValidationError, ensure_frozen, frozen_context
from nasflow.nn import (
    Cell,
    ChosenInputs,
    InputChoice,
    LayerChoice,
    ModelSpace,
    MutableConv2d,
    MutableLinear,
    MutableModule,
    ParametrizedModule,
    Repeat,
    model_wrapper,
    recursive_freeze,
)
from nasflow.space import RawFormatModelSpace, SimplifiedModelSpace, model_context


class Choices(ModelSpace, label_prefix="model"):
    def __init__(self) -> None:
        super().__init__()
        self.module = LayerChoice([nn.Conv2d(3, 2, kernel_size=1), nn.Conv2d(3, 5, kernel_size=1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def test_layer_choice_items_can_be_read_and_replaced_not_added() -> None:
    model = Choices()
    assert model.module.names == [0, 1] and model.module.label == "model/1" and len(model.module) == 2
    with pytest.raises(KeyError, match="allow adding"):
        model.module[2] = nn.Conv2d(3, 7, kernel_size=1)
    with pytest.raises(KeyError, match="not found"):
        model.module[5]
    with pytest.raises(RuntimeError, match="not supported"):
        del model.module[0]
    model.module[0] = nn.Conv2d(3, 3, kernel_size=1)
    assert [m.out_channels for m in model.module] == [3, 5] and isinstance(model.module.candidates, list)
    x = torch.randn(1, 3, 3, 3)
    # replacing works in place (raw format); a rebuild from the constructor gets the original (as NNI)
    assert RawFormatModelSpace.from_model(model).freeze({"model/1": 0}).executable_model()(x).shape[1] == 3
    assert SimplifiedModelSpace.from_model(model).freeze({"model/1": 0}).executable_model()(x).shape[1] == 2
    named = LayerChoice({"a": nn.ReLU(), "b": nn.Tanh()}, label="named")
    assert named.names == ["a", "b"] and list(named.candidates) == ["a", "b"] and isinstance(named["b"], nn.Tanh)


def test_partial_samples_freeze_the_chosen_branch() -> None:
    class Nested(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.module = LayerChoice([
                LayerChoice([nn.Conv2d(3, 3, 1), nn.Conv2d(3, 4, 1), nn.Conv2d(3, 5, 1)], label="b"),
                nn.Conv2d(3, 1, 1),
            ], label="a")

    space = Nested()
    x = torch.randn(1, 3, 5, 5)
    assert torch.equal(space.freeze({"a": 1}).module(x), space.module[1](x))  # "b" is not needed
    assert torch.equal(space.freeze({"a": 0, "b": 2}).module(x), space.module[0][2](x))
    with pytest.raises(SampleValidationError):
        space.freeze({"a": 0, "b": 3})
    space.freeze({"a": 1, "b": 3})  # an invalid value for an unchosen branch is ignored, as in NNI
    assert isinstance(space.freeze({"a": 0, "b": 1}).module, nn.Conv2d)


class Inputs(ModelSpace, label_prefix="model"):
    def __init__(self, n_chosen: int = 1, reduction: str = "sum") -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 5 if n_chosen == 1 else 3, 1)
        self.input = InputChoice(2, n_chosen=n_chosen, reduction=reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.input([self.conv1(x), self.conv2(x)])


@pytest.mark.parametrize("space_format", [RawFormatModelSpace, SimplifiedModelSpace])
def test_input_choice_samples_are_lists(space_format: type) -> None:
    model = space_format.from_model(Inputs())
    assert list(model.simplify()) == ["model/1"]
    x = torch.randn(1, 3, 3, 3)
    assert model.freeze({"model/1": [0]}).executable_model()(x).shape[1] == 3
    assert model.freeze({"model/1": [1]}).executable_model()(x).shape[1] == 5
    for reduction, check in [("none", lambda r: len(r) == 2), ("concat", lambda r: r.shape[1] == 6),
                             ("sum", lambda r: r.shape[1] == 3), ("mean", lambda r: r.shape[1] == 3)]:
        chosen = space_format.from_model(Inputs(2, reduction)).random().executable_model()
        assert isinstance(chosen.input, ChosenInputs) and chosen.input.chosen == [0, 1]
        assert check(chosen(x))


def test_value_choices_in_and_around_layer_choices() -> None:
    class Net(ModelSpace, label_prefix="model"):
        def __init__(self) -> None:
            super().__init__()
            self.linear = LayerChoice([MutableLinear(3, Categorical([10, 20])),
                                       MutableLinear(3, Categorical([30, 40]))])
            self.conv = MutableConv2d(3, Categorical([6, 8]), kernel_size=Categorical([3, 5]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x)

    model = SimplifiedModelSpace.from_model(Net())
    assert len(model.simplify()) == 5
    sizes = {m.executable_model()(torch.randn(1, 3)).size(1) for m in model.grid()}
    assert sizes == {10, 20, 30, 40}

    class Conflicting(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = MutableConv2d(3, Categorical([3, 5], label="a"), 1)
            self.conv2 = MutableConv2d(3, Categorical([3, 6], label="a"), 1)

    with pytest.raises(ValueError, match="same label 'a' but are different"):
        SimplifiedModelSpace.from_model(Conflicting())


def test_cell_factories_get_node_op_and_input_index() -> None:
    calls = []

    def factory(node_index: int, op_index: int, input_index: int | None) -> nn.Module:
        calls.append((node_index, op_index, input_index))
        return nn.Conv2d(8, 8, 1) if input_index is None or input_index < 2 else nn.Identity()

    class CellSpace(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.cell = Cell([factory, nn.Identity()], num_nodes=2, num_ops_per_node=1, num_predecessors=2,
                             merge_op="loose_end", label="cell")

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.cell(a, b)

    space = CellSpace()
    assert calls == [(2, 0, None), (3, 0, None)]  # the input is not known in the space
    assert space.cell.output_node_indices == [2, 3]  # a list; every node in the space (dry run)
    assert space.simplify()["cell/op_2_0"].values == ["0", "1"]
    sample = {"cell/input_2_0": [0], "cell/op_2_0": "0", "cell/input_3_0": [2], "cell/op_3_0": "0"}
    calls.clear()
    frozen = space.freeze(sample)
    assert calls == [(2, 0, 0), (3, 0, 2)]  # frozen: the factory sees the chosen input
    assert frozen.cell.output_node_indices == [3] and isinstance(frozen.cell.ops[1][0], nn.Identity)
    with model_context(sample):
        rebuilt = CellSpace()
    assert rebuilt.cell.output_node_indices == [3]
    a, b = torch.randn(1, 8, 4, 4), torch.randn(1, 8, 4, 4)
    assert frozen(a, b).shape == rebuilt(a, b).shape == (1, 8, 4, 4)


def test_repeat_depth_and_shared_or_independent_choices() -> None:
    class Deep(ModelSpace, label_prefix="model"):
        def __init__(self) -> None:
            super().__init__()
            self.shared = Repeat(LayerChoice([nn.ReLU(), nn.Tanh()], label="act"), (1, 3), label="depth")
            self.fixed = Repeat(lambda index: LayerChoice([nn.ReLU(), nn.Tanh()], label=f"layer{index}"), 2)

    space = Deep()
    assert list(space.simplify()) == ["model/depth", "model/act", "model/layer0", "model/layer1"]
    assert space.shared.label == "model/depth" and space.fixed.label is None
    model = space.freeze({"model/act": 1, "model/depth": 2, "model/layer0": 0, "model/layer1": 1})
    assert [type(m) for m in model.shared] == [nn.Tanh, nn.Tanh] and [type(m) for m in model.fixed] == [nn.ReLU,
                                                                                                       nn.Tanh]


def test_parametrized_module_records_its_arguments() -> None:
    class MyModule(ParametrizedModule):
        def __init__(self, x: int) -> None:
            super().__init__()
            self.t = x

    with frozen_context():
        module = MyModule(nasflow.choice("choice1", [1, 2, 3]))
    assert module.t == 1 and module.args["x"].label == "choice1"
    assert repr(module) == "MyModule(x=Categorical([1, 2, 3], label='choice1'))"
    assert module.freeze({"choice1": 2}).t == 2

    class ParametrizedConv2d(ParametrizedModule, nn.Conv2d, wraps=nn.Conv2d):
        pass

    conv = ParametrizedConv2d(3, nasflow.choice("out", [8, 16]), 1)
    assert repr(conv) == "ParametrizedConv2d(in_channels=3, out_channels=Categorical([8, 16], label='out'), " \
                         "kernel_size=1)"
    assert conv.out_channels == 8 and conv.args["padding"] == 0 and conv.contains({"out": 16})
    assert type(conv.freeze({"out": 16})) is nn.Conv2d and conv.freeze({"out": 16}).out_channels == 16


def test_layers_mirror_torch_nn() -> None:
    assert layers.Sequential is nn.Sequential and layers.init is nn.init
    conv = layers.Conv2d(3, 5, kernel_size=nasflow.choice("kz", [3, 5]))
    assert conv.freeze({"kz": 5}).kernel_size == (5, 5)
    assert issubclass(nasflow.nn.MutableGELU, nn.GELU) and not hasattr(nasflow.nn, "Conv2d")


def test_model_space_records_its_construction() -> None:
    class Space(ModelSpace):
        def __init__(self, a: int, b: int = 1) -> None:
            super().__init__()
            self.d = self.add_mutable(Categorical([4, 5, 6], label="d"))

    model = Space(2)
    assert model.args == {"a": 2, "b": 1} and model.trace_kwargs == {"a": 2} and model.trace_symbol is Space
    assert nasflow.is_traceable(model)
    with pytest.raises(TypeError, match="ModelSpace"):
        model_wrapper(Space)


def test_ensure_frozen_in_a_space_and_a_custom_freeze() -> None:
    class Net(ModelSpace, label_prefix="model"):
        def __init__(self) -> None:
            super().__init__()
            self.module = Categorical([1, 2, 3], label="x")
            self.add_mutable(self.module)
            self.dry_run_value = ensure_frozen(self.module)

        def freeze(self, sample: dict) -> nn.Module:
            with model_context(sample):
                return self.__class__()

    model = Net()
    assert model.dry_run_value == 1 and model.contains({"model/x": 1}) and not model.contains({"model/x": 4})
    assert model.freeze({"model/x": 3}).dry_run_value == 3
    assert RawFormatModelSpace.from_model(model).freeze({"model/x": 2}).executable_model().dry_run_value == 2

    class Inner(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.aux = nn.Parameter(torch.zeros(1, ensure_frozen(Categorical([64, 128], label="a")), 3, 3))

    class WithParameter(ModelSpace, label_prefix="model"):
        def __init__(self) -> None:
            super().__init__()
            self.choice = self.add_mutable(Categorical([64, 128], label="a"))
            self.inner = Inner()

    space = SimplifiedModelSpace.from_model(WithParameter())
    assert list(space.simplify()) == ["model/a"]
    assert space.freeze({"model/a": 128}).executable_model().inner.aux.size(1) == 128


def test_mutable_descendants_and_recursive_freeze() -> None:
    class A(MutableModule):
        pass

    class C(MutableModule):
        def __init__(self) -> None:
            super().__init__()
            self.b = A()

    class E(MutableModule):
        def __init__(self) -> None:
            super().__init__()
            self.a = A()
            self.d = nn.Sequential(C())

    e = E()
    assert [name for name, _ in e.named_mutable_descendants()] == ["a", "d.0"]
    frozen = e.freeze({})
    assert frozen is not e and repr(frozen) == repr(e)
    plain, replaced = recursive_freeze(nn.Linear(2, 2), {})
    assert not replaced and isinstance(plain, nn.Linear)
    lc = LayerChoice([nn.ReLU(), nn.Tanh()], label="lc")
    frozen_lc, replaced = recursive_freeze(lc, {"lc": 1})
    assert replaced and isinstance(frozen_lc, nn.Tanh)
    assert copy.deepcopy(e).freeze({}) is not None
