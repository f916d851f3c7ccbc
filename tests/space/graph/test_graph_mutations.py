"""Mutation details: InputChoice rewiring, constraints, and a custom mutator on the IR."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

import nasflow
from nasflow.mutable import ConstraintViolation, ExpressionConstraint
from nasflow.nn import InputChoice, ModelSpace, MutableLinear
from nasflow.space import SimplifiedModelSpace
from nasflow.space.graph import FunctionOp, GraphModelSpace, Mutator
from nasflow.space.graph.values import Ref


class Inputs(ModelSpace):
    def __init__(self, n_chosen: int | None, reduction: str) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.pick = InputChoice(3, n_chosen, reduction, label="pick")

    def forward(self, x: torch.Tensor) -> object:
        return self.pick([x, self.fc(x), x * 3])


def _both(space: ModelSpace, sample: dict) -> tuple[nn.Module, nn.Module, GraphModelSpace]:
    graph = GraphModelSpace.from_model(space)
    model = graph.freeze(sample)
    return SimplifiedModelSpace.from_model(space).freeze(sample).executable_model(), model.executable_model(), model


@pytest.mark.parametrize(("reduction", "chosen"), [("sum", [1]), ("mean", [0, 1, 2]), ("concat", [2, 0]),
                                                     ("none", [0, 2]), ("none", [])])
def test_input_choice_rewiring_matches(reduction: str, chosen: list[int]) -> None:
    reference, generated, model = _both(Inputs(None, reduction), {"pick": chosen})
    generated.load_state_dict(reference.state_dict())
    x = torch.randn(4, 2)
    expected, got = reference(x), generated(x)
    if isinstance(expected, list):
        assert len(expected) == len(got) and all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))
    else:
        assert torch.allclose(expected, got)
    if len(chosen) == 1:  # one input: the node is gone, its consumer reads the input directly
        assert not model.root_graph.get_nodes_by_label("pick") and "pick" not in model.root_graph.hidden_nodes


def test_nothing_chosen_fails_when_run_in_both_formats() -> None:
    reference, generated, _ = _both(Inputs(None, "sum"), {"pick": []})
    for module in (reference, generated):
        with pytest.raises(ValueError, match="No input was chosen"):
            module(torch.randn(4, 2))


class Constrained(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        a, b = nasflow.choice("a", [2, 4, 8]), nasflow.choice("b", [2, 4, 8])
        self.fc1 = MutableLinear(3, a)
        self.fc2 = MutableLinear(a, b)
        self.add_mutable(ExpressionConstraint(a + b <= 8, label="budget"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x))


def test_constraints_of_the_space_are_kept() -> None:
    graph = GraphModelSpace.from_model(Constrained())
    assert set(graph.simplify()) == {"a", "b", "budget"}
    with pytest.raises(ConstraintViolation, match="budget"):
        graph.freeze({"a": 8, "b": 4})
    rng = random.Random(0)
    for _ in range(10):
        sample: dict = {}
        graph.random(sample, rng)
        assert sample["a"] + sample["b"] <= 8
    loaded = GraphModelSpace.load(graph.dump())
    assert set(loaded.simplify()) == {"a", "b", "budget"}
    assert graph.freeze({"a": 4, "b": 4}).executable_model()(torch.randn(1, 3)).shape == (1, 4)


class DoubleOutput(Mutator):
    """An NNI-style custom mutator: edit the IR directly (here: scale the model's output by 2)."""

    def mutate(self, model: GraphModelSpace, sample: dict) -> list:
        graph = model.root_graph
        (edge,) = graph.incoming_edges(graph.output_node)
        node = graph.insert_node_on_edge(edge, "double", FunctionOp(target=Ref("operator:mul")))
        node.args = (node.args[0], 2)
        return [2]


def test_custom_mutator_edits_a_copy() -> None:
    space = GraphModelSpace.from_model(Constrained())
    model = space.freeze({"a": 2, "b": 2})
    doubled = DoubleOutput(label="double").apply(model, {})
    assert doubled.history[-1].mutator == "DoubleOutput" and doubled.history[-1].samples == [2]
    assert "double" not in model.root_graph.hidden_nodes  # the original is untouched
    base, twice = model.executable_model(), doubled.executable_model()
    twice.load_state_dict(base.state_dict())
    x = torch.randn(2, 3)
    assert torch.allclose(twice(x), base(x) * 2)
    assert "double = fc2 * 2" in doubled.code()
