"""Bad input to the graph format fails early and says what to do."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nasflow
from nasflow.evaluator import FunctionalEvaluator, evaluate_model
from nasflow.mutable import ensure_frozen
from nasflow.nn import LayerChoice, ModelSpace, ParametrizedModule
from nasflow.space.graph import GraphConversionError, GraphModelSpace


class DataDependent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x
        return -x


class LoopsOverRows(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([row * 2 for row in x])


class TrainingBranch(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.5 if self.training else x


class Body(nn.Module):
    def __init__(self, branch: nn.Module) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.branch = branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.branch(self.fc(x))


class Wrapped(ModelSpace):
    def __init__(self, branch_cls: type) -> None:
        super().__init__()
        self.body = Body(branch_cls())
        self.act = LayerChoice([nn.ReLU(), nn.Tanh()], label="act")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x))


@pytest.mark.parametrize(("branch", "found", "line"), [
    (DataDependent, "data-dependent control flow", "if x.sum() > 0:"),
    (LoopsOverRows, "iterates over a traced value", "return torch.stack([row * 2 for row in x])"),
])
def test_untraceable_module_names_its_path_the_code_and_the_fix(branch: type, found: str, line: str) -> None:
    with pytest.raises(GraphConversionError) as info:
        GraphModelSpace.from_model(Wrapped(branch))
    message = str(info.value)
    assert f"module 'body.branch' ({branch.__name__})" in message
    assert found in message and "test_graph_errors.py:" in message and f"`{line}`" in message
    assert "make that module a basic unit: subclass nasflow.nn.ParametrizedModule" in message


def test_branching_on_training_mode_is_refused() -> None:
    with pytest.raises(GraphConversionError, match=r"module 'body.branch'.*self.training.*ParametrizedModule"):
        GraphModelSpace.from_model(Wrapped(TrainingBranch))


class BasicLoop(ParametrizedModule):
    """The same loop as a basic unit is fine: it is one node running its own forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([row * 2 for row in x])


def test_untraceable_code_is_fine_in_a_basic_unit() -> None:
    space = GraphModelSpace.from_model(Wrapped(BasicLoop))
    model = space.freeze({"act": 1}).executable_model()
    x = torch.randn(3, 4)
    assert torch.allclose(model(x), torch.tanh(model.body.branch(model.body.fc(x))))


class Mismatch(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = LayerChoice([nn.Linear(4, 8), nn.Linear(4, 16)], label="hidden")
        self.out = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(x))


def _run(model: nn.Module) -> None:
    nasflow.report_final_result(float(model(torch.randn(3, 4)).sum().detach()))


def test_layer_choice_shape_mismatch_surfaces_when_the_model_runs() -> None:
    space = GraphModelSpace.from_model(Mismatch(), FunctionalEvaluator(_run))
    assert evaluate_model(space.freeze({"hidden": 0})).final is not None
    bad = space.freeze({"hidden": 1})
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        bad.execute()


def test_dummy_input_catches_the_shape_mismatch_at_conversion() -> None:
    with pytest.raises(GraphConversionError, match=r"LayerChoice 'hidden'.*0 -> \(3, 8\), 1 -> \(3, 16\)"):
        GraphModelSpace.from_model(Mismatch(), dummy_input=torch.randn(3, 4))
    space = Wrapped(BasicLoop)
    GraphModelSpace.from_model(space, dummy_input=torch.randn(2, 4))  # agreeing candidates pass
    assert space.training  # modes are restored


SHARED = nn.Linear(4, 4)  # built outside any ModelSpace: its init arguments were not recorded


class UsesOutsideModule(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.shared = SHARED

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shared(x)


def test_module_built_outside_a_space_is_reported() -> None:
    with pytest.raises(GraphConversionError, match=r"init arguments of module 'shared' \(Linear\) were not recorded"):
        GraphModelSpace.from_model(UsesOutsideModule())


class PythonChoice(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        width = ensure_frozen(nasflow.choice("width", [4, 8]))
        self.fc = nn.Linear(4, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def test_choices_resolved_in_python_are_reported() -> None:
    with pytest.raises(GraphConversionError, match=r"\['width'\] in plain Python \(ensure_frozen\).*simplified format"):
        GraphModelSpace.from_model(PythonChoice())


class ChoiceInsideBasicUnit(ParametrizedModule):
    def __init__(self) -> None:
        super().__init__()
        self.inner = LayerChoice([nn.ReLU(), nn.Tanh()], label="inner")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


class HidesAChoice(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.unit = ChoiceInsideBasicUnit()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unit(x)


def test_choice_inside_a_basic_unit_is_reported() -> None:
    with pytest.raises(GraphConversionError, match=r"module 'unit'.*basic unit.*\['inner'\]"):
        GraphModelSpace.from_model(HidesAChoice())


class LambdaCall(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x).to(dtype=torch.float64).sum(dim=-1)


def test_options_and_inputs_are_checked() -> None:
    with pytest.raises(TypeError, match="dummy_input"):
        GraphModelSpace.from_model(LambdaCall(), dummy=1)
    with pytest.raises(TypeError, match="torch module"):
        GraphModelSpace.from_model("not a module")  # type: ignore[arg-type]
    frozen = Mismatch().freeze({"hidden": 0})
    with pytest.raises(ValueError, match="already a frozen model"):
        GraphModelSpace.from_model(frozen)
    model = GraphModelSpace.from_model(LambdaCall()).executable_model()  # no choices: runnable as is
    assert model(torch.randn(3, 2)).dtype == torch.float64
