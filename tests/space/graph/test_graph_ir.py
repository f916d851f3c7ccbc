"""Graph IR: building and editing graphs, JSON round trips, what travels to a trial."""

from __future__ import annotations

import json
import os
import pickle
import random
import subprocess
import sys
from pathlib import Path

import cloudpickle
import pytest
import torch
from graph_corpus import CORPUS, DartsSpace, MobileNetSpace, ResNetSpace
from torch import nn

from nasflow.evaluator import FunctionalEvaluator
from nasflow.space import ModelStatus
from nasflow.space.graph import (
    FunctionOp,
    GraphFormatError,
    GraphModelSpace,
    ModuleOp,
    Mutation,
    MutatorSequence,
    PytorchGraphModelSpace,
    UnknownOperationError,
)
from nasflow.space.graph.ir import Graph
from nasflow.space.graph.values import Ref, Slot

HERE = Path(__file__).parent


def score(model: nn.Module, size: int = 6) -> float:
    """An evaluator function importable by path (workers import it from graph_corpus's folder)."""
    import nasflow

    with torch.no_grad():
        value = float(model.eval()(torch.ones(2, 3, size, size)).sum())
    nasflow.report_final_result(value)
    return value


def _sample(space: GraphModelSpace, seed: int) -> dict:
    sample: dict = {}
    space.random(sample, random.Random(seed))
    return sample


@pytest.fixture(scope="module")
def darts() -> GraphModelSpace:
    torch.manual_seed(0)
    return GraphModelSpace.from_model(DartsSpace())


def test_alias_and_structure(darts: GraphModelSpace) -> None:
    assert PytorchGraphModelSpace is GraphModelSpace
    root = darts.root_graph
    assert root.name == "_model" and darts.status is ModelStatus.Initialized
    cell = darts.graphs[root.get_node_by_python_name("cell1").cell]
    assert cell.mutation["type"] == "cell"
    op = cell.get_nodes_by_label("darts/cell1/op_2_0")
    assert len(op) == 1 and op[0].mutation["type"] == "layer_choice"
    assert len(op[0].mutation["candidates"]) == 6
    assert cell.get_nodes_by_type("function")  # the sums and the concatenation
    assert [n.name for n in cell.topo_sort()][:1] == ["preprocessor"]


def test_graph_editing_api() -> None:
    graph = Graph("g")
    graph.input_node.operation = graph.input_node.operation.replace(signature=[{"name": "x", "kind": "positional"}])
    relu = graph.add_node("relu", FunctionOp(target=Ref("torch:relu")), (Slot(0),))
    graph.add_edge((graph.input_node, 0), (relu, 0))
    out_edge = graph.add_edge((relu, None), (graph.output_node, 0))
    graph.output_node.args = (Slot(0),)
    lin = graph.insert_node_on_edge(out_edge, "fc", ModuleOp(cls=Ref("torch.nn:Linear"), args=(3, 3), kwargs={}),
                                    python_name="fc")
    assert [n.name for n in graph.topo_sort()] == ["relu", "fc"]
    assert graph.get_node_by_name("fc") is lin and graph.get_node_by_python_name("fc") is lin
    assert lin.predecessors == [relu] and lin.successors == [graph.output_node]
    assert graph.add_node("relu", FunctionOp(target=Ref("torch:relu"))).name == "relu_1"
    graph.remove_node(graph.get_node_by_name("relu_1"))
    model = GraphModelSpace()
    model.graphs["_model"] = graph
    module = model.executable_model()
    x = torch.randn(2, 3)
    assert torch.allclose(module(x), module.fc(torch.relu(x)))
    cycle = graph.add_edge((lin, None), (relu, 1))
    with pytest.raises(GraphFormatError, match="cycle"):
        graph.topo_sort()
    graph.del_edge(cycle)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_json_round_trip_of_spaces_and_models(name: str) -> None:
    torch.manual_seed(0)
    space = GraphModelSpace.from_model(CORPUS[name][0]())
    for model in (space, space.freeze(_sample(space, 1))):
        data = json.dumps(model.dump())
        loaded = GraphModelSpace.load(data)
        assert json.dumps(loaded.dump()) == data
        assert loaded.simplify().keys() == model.simplify().keys()
    again = GraphModelSpace.load(json.dumps(space.dump()))
    sample = _sample(space, 2)
    assert json.dumps(again.freeze(sample).dump()) == json.dumps(space.freeze(sample).dump())


def test_frozen_model_records_history_and_drops_unused_graphs(darts: GraphModelSpace) -> None:
    sample = _sample(darts, 3)
    model = darts.freeze(sample)
    assert model.status is ModelStatus.Frozen and model.sample == sample
    assert model.simplify() == {}
    recorded = {m.label: m for m in model.history}
    assert {label for label in sample if "/op_" in label} <= set(recorded)
    assert recorded["darts/cell2"].mutator == "CellMutator"
    assert recorded["darts/cell2"].samples == [sample["darts/cell2/input_2_0"], sample["darts/cell2/input_3_0"]]
    assert all(isinstance(m, Mutation) for m in model.history)
    assert len(model.graphs) < len(darts.graphs) / 4
    assert set(model.graphs) == set(model.reachable_graphs())
    with pytest.raises(RuntimeError, match="already frozen"):
        model.freeze(sample)
    assert darts.freeze(sample).dump() == model.dump()  # deterministic; the space is untouched


def test_mutators_are_the_space_decisions(darts: GraphModelSpace) -> None:
    mutators = darts.mutators
    assert isinstance(mutators, MutatorSequence)
    assert mutators.simplify().keys() == darts.simplify().keys()
    kinds = {type(m).__name__ for m in mutators}
    assert kinds == {"LayerChoiceMutator", "CellMutator"}
    sample = _sample(darts, 4)
    assert json.dumps(mutators.freeze(sample).dump()) == json.dumps(darts.freeze(sample).dump())


def test_value_choice_and_repeat_mutations() -> None:
    mobile = GraphModelSpace.from_model(MobileNetSpace())
    sample = {"mb/width": 12, "mb/expand1": 3, "mb/k1": 5, "mb/expand2": 2, "mb/k2": 7}
    model = mobile.freeze(sample)
    block = model.graphs[model.root_graph.get_node_by_python_name("b1").cell]
    depthwise = block.get_node_by_python_name("depthwise").operation
    assert depthwise.cls.path == "torch.nn:Conv2d"
    assert depthwise.parameters["args"] == (36, 36, 5, 1)
    assert depthwise.parameters["kwargs"] == {"padding": 2, "groups": 36, "bias": False}
    resnet = GraphModelSpace.from_model(ResNetSpace())
    frozen = resnet.freeze({**_defaults(resnet), "resnet/stage1": 2, "resnet/depth2": 0})
    stage1 = frozen.graphs[frozen.root_graph.get_node_by_python_name("stage1").cell]
    stage2 = frozen.graphs[frozen.root_graph.get_node_by_python_name("stage2").cell]
    assert len(stage1.hidden_nodes) == 2 and len(stage2.hidden_nodes) == 0
    assert stage2.edges[0].head is stage2.input_node and stage2.edges[0].tail is stage2.output_node


def _defaults(space: GraphModelSpace) -> dict:
    sample: dict = {}
    space.default(sample)
    return sample


def test_unknown_operation_type_is_a_clear_error(darts: GraphModelSpace) -> None:
    data = darts.freeze(_sample(darts, 5)).dump()
    graph = next(iter(data["graphs"].values()))
    graph["nodes"][0]["operation"]["type"] = "conv_fancy"
    with pytest.raises(UnknownOperationError, match="Unknown operation type 'conv_fancy'.*Known types: .*module"):
        GraphModelSpace.load(data)
    with pytest.raises(GraphFormatError, match="format='nasflow.graph'"):
        GraphModelSpace.load({"graphs": {}})
    bad_edge = darts.dump()
    bad_edge["graphs"]["_model"]["edges"].append(["nowhere", None, "_outputs", 0])
    with pytest.raises(GraphFormatError, match="unknown node"):
        GraphModelSpace.load(bad_edge)


def test_frozen_model_pickles_compactly_and_runs(darts: GraphModelSpace) -> None:
    model = darts.freeze(_sample(darts, 6))
    model.evaluator = FunctionalEvaluator(score)
    payload = cloudpickle.dumps(model)
    assert len(payload) < 30_000 and len(payload) * 3 < len(cloudpickle.dumps(darts))  # only the used graphs
    state = model.__getstate__()
    assert json.loads(state["ir"])["format"] == "nasflow.graph" and state["main"] == {}
    restored = pickle.loads(payload)
    assert restored.sample == model.sample and restored.status is ModelStatus.Frozen
    torch.manual_seed(0)
    a = restored.executable_model()
    torch.manual_seed(0)
    b = model.executable_model()
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(a.eval()(x), b.eval()(x))


def test_frozen_model_runs_in_another_process(darts: GraphModelSpace, tmp_path: Path) -> None:
    import test_graph_ir

    model = darts.freeze(_sample(darts, 7))
    model.evaluator = FunctionalEvaluator(test_graph_ir.score)
    (tmp_path / "model.pkl").write_bytes(cloudpickle.dumps(model))
    script = (
        "import pickle, sys\n"
        "from nasflow.evaluator import evaluate_model\n"
        f"model = pickle.loads(open({str(tmp_path / 'model.pkl')!r}, 'rb').read())\n"
        "print('final', evaluate_model(model).final)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("final ")


def test_generated_modules_pickle_and_deepcopy(darts: GraphModelSpace) -> None:
    import copy

    module = darts.freeze(_sample(darts, 8)).executable_model().eval()
    x = torch.randn(2, 3, 6, 6)
    for twin in (pickle.loads(pickle.dumps(module)), copy.deepcopy(module)):
        assert type(twin).__name__ == type(module).__name__ and not twin.training
        assert torch.equal(twin(x), module(x))
