"""Every model-space module kind, frozen both ways, has the shapes its sample implies.

``both_paths`` freezes a space in place (raw: ``space.freeze``) and by re-running its constructor
(simplified: ``space.rebuild``), so each check covers both.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nasflow
from nasflow.mutable import ensure_frozen
from nasflow.nn import (
    Cell,
    ChosenInputs,
    InputChoice,
    LayerChoice,
    ModelSpace,
    MutableBatchNorm2d,
    MutableConv2d,
    MutableDropout,
    MutableEmbedding,
    MutableLayerNorm,
    MutableLinear,
    MutableModule,
    ParametrizedModule,
    Repeat,
    model_context,
)


def both_paths(space: ModelSpace, sample: dict) -> list[nn.Module]:
    return [space.freeze(sample), space.rebuild(sample)]


def no_mutables_left(model: nn.Module) -> bool:
    """Only plain modules below the (still ModelSpace-typed) root, and no decisions left."""
    inner = [m for m in model.modules() if m is not model]
    return not any(isinstance(m, MutableModule) for m in inner) and model.simplify() == {}


# ---- LayerChoice -----------------------------------------------------------------------------


class ListChoice(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.op = LayerChoice([nn.Linear(4, 3), nn.Linear(4, 5), nn.Identity()], label="op")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class DictChoice(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.op = LayerChoice({"small": nn.Linear(4, 2), "big": nn.Linear(4, 9)}, label="op")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


@pytest.mark.parametrize(("index", "width"), [(0, 3), (1, 5), (2, 4)])
def test_layer_choice_list(index: int, width: int) -> None:
    space = ListChoice()
    assert space.simplify()["op"].values == [0, 1, 2]
    assert space(torch.zeros(2, 4)).shape == (2, 3)  # the space runs its default candidate
    for model in both_paths(space, {"op": index}):
        assert model(torch.zeros(2, 4)).shape == (2, width)
        assert type(model.op) is type(space.op[index])
        assert no_mutables_left(model) and model.frozen_sample == {"op": index}


def test_layer_choice_dict() -> None:
    space = DictChoice()
    assert space.simplify()["op"].values == ["small", "big"]
    assert space.op.names == ["small", "big"] and len(space.op) == 2
    for model in both_paths(space, {"op": "big"}):
        assert isinstance(model.op, nn.Linear) and model.op.out_features == 9
        assert model(torch.zeros(1, 4)).shape == (1, 9)


# ---- InputChoice -----------------------------------------------------------------------------


class Inputs(ModelSpace):
    def __init__(self, n_chosen: int | None, reduction: str) -> None:
        super().__init__()
        self.pick = InputChoice(3, n_chosen, reduction, label="pick")

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return self.pick(xs)


XS = [torch.full((2, 4), 1.0), torch.full((2, 4), 10.0), torch.full((2, 4), 100.0)]


@pytest.mark.parametrize(
    ("n_chosen", "reduction", "chosen", "expected"),
    [
        (1, "sum", 2, torch.full((2, 4), 100.0)),
        (2, "sum", [0, 2], torch.full((2, 4), 101.0)),
        (2, "mean", [1, 2], torch.full((2, 4), 55.0)),
        (2, "concat", [0, 1], torch.cat([XS[0], XS[1]], dim=1)),
        (3, "sum", [0, 1, 2], torch.full((2, 4), 111.0)),
        (None, "concat", [0, 2], torch.cat([XS[0], XS[2]], dim=1)),
        (None, "mean", [0, 1, 2], torch.full((2, 4), 37.0)),
    ],
)
def test_input_choice_reductions(n_chosen: int | None, reduction: str, chosen: object, expected: torch.Tensor) -> None:
    space = Inputs(n_chosen, reduction)
    for model in both_paths(space, {"pick": chosen}):
        assert isinstance(model.pick, ChosenInputs)
        assert model.pick.chosen == (chosen if isinstance(chosen, list) else [chosen])
        assert torch.equal(model(XS), expected)


def test_input_choice_none_reduction_and_defaults() -> None:
    space = Inputs(2, "none")
    for model in both_paths(space, {"pick": [2, 0]}):
        out = model(XS)
        assert isinstance(out, list) and [t[0, 0].item() for t in out] == [100.0, 1.0]
    assert Inputs(None, "concat").simplify()["pick"].default() == [0, 1, 2]
    assert Inputs(None, "concat")(XS).shape == (2, 12)  # default: every input
    assert Inputs(1, "sum").simplify()["pick"].values == [0, 1, 2]


# ---- Repeat ----------------------------------------------------------------------------------


class Repeats(ModelSpace):
    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind == "int":
            self.body = Repeat(nn.Linear(4, 4), 3, label="rep")
        elif kind == "range_module":
            self.body = Repeat(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), (1, 4), label="rep")
        elif kind == "choice_factory":
            self.body = Repeat(lambda i: nn.Linear(2**i, 2 ** (i + 1)), nasflow.choice("d", [0, 2, 3]))
        elif kind == "range_list":
            self.body = Repeat([nn.Linear(4, 5), nn.Linear(5, 6), nn.Linear(6, 7)], (1, 3), label="rep")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_repeat_int_depth_is_no_decision() -> None:
    space = Repeats("int")
    assert space.simplify() == {}
    for model in both_paths(space, {}):
        assert isinstance(model.body, nn.Sequential) and len(model.body) == 3


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_repeat_range_with_module_block(depth: int) -> None:
    space = Repeats("range_module")
    assert space.simplify()["rep"].values == [1, 2, 3, 4]
    assert len(space.body.blocks) == 4 and space.body.depth() == 1
    for model in both_paths(space, {"rep": depth}):
        assert len(model.body) == depth
        assert all(isinstance(block[0], nn.Linear) for block in model.body)
        assert model(torch.zeros(1, 4)).shape == (1, 4)
    # copies, not one module repeated
    assert space.body.blocks[0][0].weight is not space.body.blocks[1][0].weight


@pytest.mark.parametrize(("depth", "width"), [(0, 1), (2, 4), (3, 8)])
def test_repeat_choice_depth_with_factory(depth: int, width: int) -> None:
    space = Repeats("choice_factory")
    assert list(space.simplify()) == ["d"]
    for model in both_paths(space, {"d": depth}):
        assert len(model.body) == depth and no_mutables_left(model)
        assert model(torch.zeros(2, 1)).shape == (2, width)
        assert [layer.out_features for layer in model.body] == [2, 4, 8][:depth]


@pytest.mark.parametrize(("depth", "width"), [(1, 5), (3, 7)])
def test_repeat_range_with_list_blocks(depth: int, width: int) -> None:
    space = Repeats("range_list")
    for model in both_paths(space, {"rep": depth}):
        assert model(torch.zeros(1, 4)).shape == (1, width)


# ---- Cell ------------------------------------------------------------------------------------


class Cells(ModelSpace):
    def __init__(self, merge_op: str, num_ops_per_node: int) -> None:
        super().__init__()
        self.cell = Cell(
            {"lin": lambda: nn.Linear(4, 4), "id": nn.Identity()},
            num_nodes=3,
            num_ops_per_node=num_ops_per_node,
            num_predecessors=2,
            merge_op=merge_op,  # type: ignore[arg-type]
            label="cell",
        )

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.cell(a, b)


def _cell_sample(ops: str, inputs: dict[str, int]) -> dict:
    sample = {f"cell/op_{k}_{j}": ops for k in (2, 3, 4) for j in (0, 1)}
    sample.update(inputs)
    return sample


def test_cell_labels_and_merge_all() -> None:
    space = Cells("all", 1)
    assert sorted(space.simplify()) == sorted(
        [f"cell/op_{k}_0" for k in (2, 3, 4)] + [f"cell/input_{k}_0" for k in (2, 3, 4)]
    )
    assert space.simplify()["cell/input_4_0"].values == [0, 1, 2, 3]
    sample = {k: v for k, v in _cell_sample("id", {}).items() if k.endswith("_0")}
    sample.update({"cell/input_2_0": 1, "cell/input_3_0": 2, "cell/input_4_0": 0})
    a, b = torch.full((2, 4), 1.0), torch.full((2, 4), 2.0)
    for model in both_paths(space, sample):
        out = model(a, b)
        assert out.shape == (2, 12)  # every node, concatenated
        assert out[0].tolist() == [2.0] * 4 + [2.0] * 4 + [1.0] * 4  # identity ops copy their chosen input


def test_cell_loose_end_with_two_ops_per_node() -> None:
    space = Cells("loose_end", 2)
    assert len(space.simplify()) == 12
    # node 2 reads inputs 0 and 1; node 3 reads node 2 twice; node 4 reads 0 and 1: loose ends are 3 and 4
    inputs = {"cell/input_2_0": 0, "cell/input_2_1": 1, "cell/input_3_0": 2, "cell/input_3_1": 2,
              "cell/input_4_0": 0, "cell/input_4_1": 1}
    a, b = torch.full((2, 4), 1.0), torch.full((2, 4), 2.0)
    for model in both_paths(space, _cell_sample("id", inputs)):
        assert model.cell.output_node_indices == [3, 4]
        out = model(a, b)
        assert out.shape == (2, 8)
        assert out[0].tolist() == [6.0] * 4 + [3.0] * 4  # node 3 = 2 * (1 + 2); node 4 = 1 + 2
    for model in both_paths(space, _cell_sample("lin", inputs)):
        assert isinstance(model.cell.ops[0][1], nn.Linear)
        assert model(a, b).shape == (2, 8)


# ---- ParametrizedModule and Mutable* layers ---------------------------------------------------


class Block(ParametrizedModule):
    """A user basic unit: its __init__ only ever sees plain values."""

    def __init__(self, width: int, scale: float = 1.0) -> None:
        super().__init__()
        assert isinstance(width, int), "a ParametrizedModule's init must see plain values"
        self.width, self.scale = width, scale
        self.fc = nn.Linear(4, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * self.scale


class WithBlock(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.block = Block(nasflow.choice("bw", [8, 16]), scale=nasflow.choice("s", [1.0, 2.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


def test_parametrized_module_user_subclass() -> None:
    space = WithBlock()
    assert list(space.simplify()) == ["bw", "s"]
    assert space.block.width == 8 and space(torch.zeros(1, 4)).shape == (1, 8)
    for model in both_paths(space, {"bw": 16, "s": 2.0}):
        assert type(model.block) is Block
        assert model.block.width == 16 and model.block.scale == 2.0
        assert model(torch.zeros(1, 4)).shape == (1, 16)
        assert model.simplify() == {}


class Gate(ParametrizedModule):
    """A basic unit with plain arguments but a choice inside: it must still be frozen."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.act = LayerChoice([nn.ReLU(), nn.Sigmoid()], label="gate_act")


class WithGate(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.gate = Gate(3)


def test_parametrized_module_with_a_choice_inside() -> None:
    space = WithGate()
    assert list(space.simplify()) == ["gate_act"]
    for model in both_paths(space, {"gate_act": 1}):
        assert type(model.gate) is Gate and type(model.gate.act) is nn.Sigmoid
        assert model.simplify() == {}
    kept = space.freeze({"gate_act": 1})
    assert torch.equal(kept.gate.fc.weight, space.gate.fc.weight)


class Layers(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        channels = nasflow.choice("ch", [4, 8])
        kernel = nasflow.choice("k", [1, 3, 5])
        self.conv = MutableConv2d(3, channels, kernel, padding=kernel // 2)
        self.bn = MutableBatchNorm2d(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        out = nasflow.choice("out", [2, 6])
        self.fc = MutableLinear(channels, out)
        self.norm = MutableLayerNorm(out)
        self.drop = MutableDropout(nasflow.uniform("p", 0.0, 0.5))
        self.emb = MutableEmbedding(10, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.bn(self.conv(x))).flatten(1)
        return self.drop(self.norm(self.fc(x)))


@pytest.mark.parametrize(("ch", "k", "out"), [(4, 1, 2), (8, 5, 6), (8, 3, 2)])
def test_mutable_layers_become_plain_torch_layers(ch: int, k: int, out: int) -> None:
    space = Layers()
    assert sorted(space.simplify()) == ["ch", "k", "out", "p"]
    assert space(torch.zeros(2, 3, 7, 7)).shape == (2, 2)
    sample = {"ch": ch, "k": k, "out": out, "p": 0.3}
    for model in both_paths(space, sample):
        assert type(model.conv) is nn.Conv2d and model.conv.weight.shape == (ch, 3, k, k)
        assert model.conv.padding == (k // 2, k // 2)
        assert type(model.bn) is nn.BatchNorm2d and model.bn.running_mean.shape == (ch,)
        assert type(model.fc) is nn.Linear and model.fc.weight.shape == (out, ch)
        assert type(model.norm) is nn.LayerNorm and model.norm.normalized_shape == (out,)
        assert type(model.drop) is nn.Dropout and model.drop.p == 0.3
        assert type(model.emb) is nn.Embedding and model.emb.weight.shape == (10, ch)
        assert model.eval()(torch.zeros(2, 3, 7, 7)).shape == (2, out)
        assert no_mutables_left(model)


# ---- direct construction under a sample, and ensure_frozen -----------------------------------


def test_model_context_builds_the_frozen_model_directly() -> None:
    sample = {"ch": 8, "k": 3, "out": 6, "p": 0.1}
    with model_context(sample):
        model = Layers()
    assert type(model) is Layers and model.frozen_sample == sample
    assert model.simplify() == {}
    assert type(model.conv) is nn.Conv2d and model.conv.out_channels == 8
    assert model.eval()(torch.zeros(1, 3, 5, 5)).shape == (1, 6)
    with model_context({"op": 1}):
        assert ListChoice()(torch.zeros(1, 4)).shape == (1, 5)


class PlainPythonChoice(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        depth = ensure_frozen(nasflow.choice("depth", [1, 2, 3]))
        width = ensure_frozen(nasflow.choice("width", [4, 6]))
        self.layers = nn.Sequential(*[nn.Linear(width, width) for _ in range(depth)])


@pytest.mark.parametrize(("depth", "width"), [(1, 6), (3, 4)])
def test_ensure_frozen_inside_a_model_space(depth: int, width: int) -> None:
    space = PlainPythonChoice()
    assert sorted(space.simplify()) == ["depth", "width"]
    assert len(space.layers) == 1 and space.layers[0].in_features == 4  # defaults
    sample = {"depth": depth, "width": width}
    with model_context(sample):
        direct = PlainPythonChoice()
    for model in [*both_paths(space, sample), direct]:
        assert len(model.layers) == depth
        assert model.layers[0].weight.shape == (width, width)
        assert model.frozen_sample == sample
