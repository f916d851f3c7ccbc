"""The graph format computes what the user's code computes, or refuses the space naming the module.

Every space of ``faithful_spaces`` (one per class of code that used to convert wrongly, and more) is
compared with the simplified format under the same weights, in this process and, as generated
source, in a fresh one.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from faithful_spaces import (
    SPACES,
    DataDependentSliceSpace,
    Fuse,
    LazySpace,
    OptionalInputSpace,
    RepeatSpace,
)
from graph_support import run, run_standalone
from torch import nn

from nasflow.nn import Cell, LayerChoice, ModelSpace
from nasflow.space import SimplifiedModelSpace
from nasflow.space.graph import GraphConversionError, GraphModelSpace, load_weights_from


def _assert_same(expected: list[torch.Tensor], got: list[torch.Tensor]) -> None:
    assert len(expected) == len(got)
    for a, b in zip(expected, got, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert torch.equal(a, b) or (a - b).abs().max().item() <= 1e-6


def _perturb(module: nn.Module) -> None:
    """Scale every float tensor by its own random factors (zeros stay zeros, signs stay)."""
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.is_floating_point():
                tensor.mul_(torch.empty_like(tensor).uniform_(0.5, 1.5))


def _samples(space: GraphModelSpace) -> list[dict[str, Any]]:
    default: dict[str, Any] = {}
    space.default(default)
    samples, rng = [default], random.Random(3)
    for _ in range(2):
        sample: dict[str, Any] = {}
        space.random(sample, rng)
        samples.append(sample)
    return samples


@pytest.fixture(scope="module", params=sorted(SPACES))
def converted(request: pytest.FixtureRequest) -> tuple[str, GraphModelSpace, SimplifiedModelSpace]:
    space_cls, make_input, options = SPACES[request.param]
    torch.manual_seed(0)
    space = space_cls()
    graph = GraphModelSpace.from_model(space, dummy_input=make_input())  # verified at conversion too
    return request.param, graph, SimplifiedModelSpace.from_model(space)


def test_graph_models_compute_what_the_simplified_models_compute(converted: Any) -> None:
    name, graph, simplified = converted
    make_input = SPACES[name][1]
    for sample in _samples(graph):
        model = graph.freeze(sample)
        reference = simplified.freeze(sample).executable_model()
        x = make_input()
        run(reference, x)  # materializes lazy modules
        generated = model.executable_model()
        kept = {k: v for k, v in generated.named_buffers() if k not in generated.state_dict()}
        for key, buffer in kept.items():  # in no state dict: the values come from the IR
            assert torch.equal(buffer, reference.get_buffer(key.replace("__", ".")))
        _perturb(reference)  # a buffer folded into a constant would keep the old values
        expected = run(reference, x)
        report = load_weights_from(reference, generated, model)
        assert not report.skipped and len(report.loaded) == len(reference.state_dict()) + len(kept)
        _assert_same(expected, run(generated, x))


def test_generated_code_runs_standalone_in_a_fresh_process(tmp_path: Path) -> None:
    cases, expected = {}, {}
    for index, name in enumerate(sorted(SPACES)):
        space_cls, make_input, options = SPACES[name]
        torch.manual_seed(index)
        graph = GraphModelSpace.from_model(space_cls(), **options)
        sample: dict[str, Any] = {}
        graph.random(sample, random.Random(index))
        model = graph.freeze(sample)
        module = model.executable_model()
        x = make_input()
        expected[name] = run(module, x)
        cases[name] = (model.code(), module, x)
    for name, got in run_standalone(cases, tmp_path).items():
        _assert_same(expected[name], got)


def test_repeat_calls_each_factory_of_a_list_with_its_index() -> None:
    space = RepeatSpace()
    assert [type(b).__name__ for b in space.listed.blocks] == ["Sequential", "LayerChoice", "Linear"]
    assert space.listed.blocks[2].bias is not None and space.listed.blocks[1].label == "rep/list1"
    graph = GraphModelSpace.from_model(space)
    shallow = {**{label: m.default() for label, m in graph.simplify().items()}, "rep/depth": 1, "rep/ddepth": 1,
               "rep/listed": 2, "rep/direct0": 1, "rep/list1": 1}
    assert graph.freeze(shallow).sample == shallow  # choices inside cut blocks freeze at any depth


def test_lazy_modules_need_the_dummy_input() -> None:
    with pytest.raises(GraphConversionError, match=r"Module 'conv' \(LazyConv2d\) is a lazy module.*dummy_input"):
        GraphModelSpace.from_model(LazySpace())


class TunedAfterBuilding(ModelSpace):
    """Changes modules after building them, as users tune a layer: the graph rebuilds modules from
    their init arguments, so it must refuse rather than lose the change."""

    def __init__(self, change: str) -> None:
        super().__init__()
        self.conv = LayerChoice([nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 1)], label="op")
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.LeakyReLU()
        if change == "eps":
            self.bn.eps = 0.5
        elif change == "slope":
            self.act.negative_slope = 0.3
        elif change == "new":
            self.bn.note = "mine"  # a new attribute the rebuilt module would not have
        elif change == "hook":
            self.bn.register_forward_hook(lambda module, inputs, output: output * 2)
        elif change == "pre_hook":
            self.act.register_forward_pre_hook(lambda module, inputs: (inputs[0] + 1,))
        elif change == "frozen":
            self.bn.weight.requires_grad_(False)
        elif change == "replaced":
            self.bn.bias = nn.Parameter(torch.full((4,), 0.5))
        elif change == "weight_norm":
            self.conv.candidates[0] = nn.utils.parametrizations.weight_norm(self.conv.candidates[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


@pytest.mark.parametrize(("change", "module", "shown"), [
    ("eps", "bn", "eps=0.5"), ("slope", "act", "negative_slope=0.3"), ("new", "bn", "note='mine'"),
    ("hook", "bn", "it got a forward or backward hook"), ("pre_hook", "act", "it got a forward or backward hook"),
    ("frozen", "bn", "weight.requires_grad was set to False"),
    ("replaced", "bn", "its parameter 'bias' was replaced or reparametrized"),
    ("weight_norm", r"conv\.0", "its parameter 'weight' was replaced or reparametrized")])
def test_a_module_changed_after_it_was_built_is_refused(change: str, module: str, shown: str) -> None:
    with pytest.raises(GraphConversionError, match=rf"'{module}'.*changed after it was built \({shown}\)"):
        GraphModelSpace.from_model(TunedAfterBuilding(change))
    graph = GraphModelSpace.from_model(TunedAfterBuilding("none"))  # untouched modules convert
    assert isinstance(graph.freeze({"op": 1}).executable_model(), nn.Module)


class HookedContainer(ModelSpace):
    """A hook on a module the graph traces (copies the forward of): the copy would not call it."""

    def __init__(self, where: str) -> None:
        super().__init__()
        self.body = nn.Sequential(LayerChoice([nn.Linear(3, 3), nn.Identity()], label="op"), nn.ReLU())
        target = self if where == "space" else self.body
        target.register_forward_hook(lambda module, inputs, output: output + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.mark.parametrize(("where", "named"), [("space", "HookedContainer"), ("body", "'body'")])
def test_a_hook_on_a_traced_module_is_refused(where: str, named: str) -> None:
    with pytest.raises(GraphConversionError, match=rf"{named}.*has a forward or backward hook"):
        GraphModelSpace.from_model(HookedContainer(where))


class Initialized(ModelSpace):
    """A custom initialization: by the space after building (not carried: told), or by a unit's own
    constructor (carried: rebuilding the unit runs it again)."""

    def __init__(self, by_space: bool) -> None:
        super().__init__()
        self.conv = LayerChoice([nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 1)], label="op")
        self.head = ZeroHead(4) if not by_space else nn.Linear(4, 2)
        if by_space:
            nn.init.zeros_(self.head.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean((2, 3)))


class ZeroHead(nn.Module):
    _nni_basic_unit = True

    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, 2)
        nn.init.zeros_(self.fc.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def test_a_custom_initialization_by_the_space_is_told_not_lost_silently() -> None:
    with pytest.warns(UserWarning, match=r"Initialized: its constructor wrote the parameters of 1 modules.*'head'.*"
                                         r"default initialization.*simplified"):
        graph = GraphModelSpace.from_model(Initialized(by_space=True))
    assert graph.freeze({"op": 0}).executable_model().head.weight.abs().sum() > 0  # as told: the default
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graph = GraphModelSpace.from_model(Initialized(by_space=False))  # the unit initializes itself
    assert graph.freeze({"op": 0}).executable_model().head.fc.weight.abs().sum() == 0


def test_an_optional_argument_the_space_branches_on_needs_the_call() -> None:
    with pytest.raises(GraphConversionError, match=r"optional arguments \['mask'\].*dummy_input"):
        GraphModelSpace.from_model(OptionalInputSpace())
    x = torch.randn(3, 5)
    space = OptionalInputSpace()
    alone = GraphModelSpace.from_model(space, dummy_input=x).freeze({"opt2/width": 3}).executable_model()
    assert list(alone.forward.__code__.co_varnames[:2]) == ["self", "x"]  # traced for forward(x)
    both = GraphModelSpace.from_model(space, dummy_input=(x, torch.ones(3, 1)))
    generated = both.freeze({"opt2/width": 3}).executable_model()
    load_weights_from(space, generated, both.freeze({"opt2/width": 3}))
    mask = torch.tensor([[1.0], [0.0], [2.0]])
    assert torch.equal(generated(x, mask), space.fc(x) * mask)


def test_data_dependent_code_in_the_space_gets_a_fix_for_the_space() -> None:
    with pytest.raises(GraphConversionError) as info:
        GraphModelSpace.from_model(DataDependentSliceSpace())
    message = str(info.value)
    assert message.startswith("Cannot convert the space (DataDependentSliceSpace)")
    assert "`keep = int((x[0] > 0).sum())`" in message and "faithful_spaces.py:" in message
    assert "out of the space's own forward()" in message and "torch.fx.wrap" in message
    assert "make that module a basic unit" not in message and "control flow" not in message


CALLS = [0]


class CountsCalls(nn.Module):
    """Python state outside the module: one traced graph keeps the count of the tracing call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        CALLS[0] += 1
        return x * CALLS[0]


class Body(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.counter = CountsCalls()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.counter(self.fc(x))


class CountingSpace(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.body = Body()
        self.act = LayerChoice([nn.ReLU(), nn.Tanh()], label="count/act")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x))


def test_self_verification_names_the_first_module_that_differs() -> None:
    GraphModelSpace.from_model(CountingSpace())  # without a dummy input, nothing can tell
    with pytest.raises(GraphConversionError, match=r"sample \{'count/act': 0\}: the output of module "
                                                   r"'body.counter' \(CountsCalls\) differs.*make module "
                                                   r"'body.counter' a basic unit"):
        GraphModelSpace.from_model(CountingSpace(), dummy_input=torch.randn(2, 3))


class Block(nn.Module):
    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.fc = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) + 1


class SharedSpace(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        shared = nn.Linear(3, 3)
        self.first, self.second = Block(shared), Block(shared)
        self.act = LayerChoice([nn.ReLU(), nn.Tanh()], label="shared/act")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.second(self.first(x)))


def test_a_tensor_shared_by_two_modules_is_refused() -> None:
    with pytest.raises(GraphConversionError, match=r"'first.fc.weight' and 'second.fc.weight' are one tensor"):
        GraphModelSpace.from_model(SharedSpace())


class RebuiltPerSample(ModelSpace):
    """As NNI's NDS spaces: widths computed while building, so freezing rebuilds the space."""

    def __init__(self) -> None:
        super().__init__()
        self.act = LayerChoice([nn.ReLU(), nn.Tanh()], label="rebuilt/act")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x)

    def freeze(self, sample: dict[str, Any]) -> ModelSpace:
        return self.rebuild(sample)


def test_a_space_that_freezes_its_own_way_is_refused() -> None:
    with pytest.raises(GraphConversionError, match=r"The space \(RebuiltPerSample\) overrides freeze\(\).*simplified"):
        GraphModelSpace.from_model(RebuiltPerSample())


class CalledTwoWays(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.fuse = Fuse()
        self.act = LayerChoice([nn.ReLU(), nn.Tanh()], label="two/act")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fuse(self.fuse(x), x))


def test_a_module_called_in_two_ways_is_refused() -> None:
    with pytest.raises(GraphConversionError, match=r"Module 'fuse' \(Fuse\) is called in two ways.*'y': None"):
        GraphModelSpace.from_model(CalledTwoWays())


class StopsGradients(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.teacher = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.teacher(x)
        return x - target


class GradModeSpace(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.body = StopsGradients()
        self.act = LayerChoice([nn.ReLU(), nn.Tanh()], label="grad/act")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x))


class AddsIfTensor(nn.Module):
    def forward(self, x: torch.Tensor, y: Any) -> torch.Tensor:
        return x + y if isinstance(y, torch.Tensor) else x  # a traced y is no tensor while tracing


class TypeTestSpace(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.body = AddsIfTensor()
        self.act = LayerChoice([nn.ReLU(), nn.Tanh()], label="type/act")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x, x * 2))


def test_grad_modes_and_tensor_type_tests_in_forward_are_refused_and_asserts_kept() -> None:
    with pytest.raises(GraphConversionError, match=r"module 'body' \(StopsGradients\).*uses torch.no_grad\(\)"):
        GraphModelSpace.from_model(GradModeSpace())
    with pytest.raises(GraphConversionError, match=r"module 'body' \(AddsIfTensor\).*isinstance\(<traced value>"):
        GraphModelSpace.from_model(TypeTestSpace())
    shapes = GraphModelSpace.from_model(SPACES["shapes"][0]()).freeze({"shape/width": 6})
    assert "torch._assert(" in shapes.code()
    with pytest.raises(AssertionError, match="a sequence"):
        shapes.executable_model()(torch.randn(2, 6))


class InputDependentCell(ModelSpace):
    """NNI's (node_index, op_index, input_index) factories: a stride that depends on the chosen input."""

    def __init__(self) -> None:
        super().__init__()
        ops = {"pool": lambda node, op, inp: nn.AvgPool2d(3, 2 if inp is None or inp < 1 else 1, 1)}
        self.cell = Cell(ops, num_nodes=2, num_ops_per_node=1, num_predecessors=1, label="c")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cell([x])


def test_a_cell_whose_operations_depend_on_the_chosen_input_is_refused() -> None:
    with pytest.raises(GraphConversionError, match=r"Cell 'c' at 'cell' builds its operations with factories "
                                                   r"taking the input index.*simplified format"):
        GraphModelSpace.from_model(InputDependentCell())
