"""NAS-Bench-101's cell: its canonical form, widths and constraint, as the benchmark defines them."""

from __future__ import annotations

import pytest
import torch

from nasflow.hub import NasBench101
from nasflow.hub.nasbench101 import prune, vertex_channels
from nasflow.mutable import ConstraintViolation
from nasflow.nn import model_context


def test_prune_drops_vertices_off_the_input_output_paths() -> None:
    # 0 -> 1 -> 3 (out); vertex 2 reads the input but feeds nothing
    matrix = [[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
    pruned, ops = prune(matrix, ["IN", "a", "b", "OUT"])
    assert pruned == [[0, 1, 0], [0, 0, 1], [0, 0, 0]] and ops == ["IN", "a", "OUT"]
    with pytest.raises(ConstraintViolation, match="not connected"):
        prune([[0, 1, 0], [0, 0, 0], [0, 0, 0]], ["IN", "a", "OUT"])


def test_vertex_channels_split_the_output_among_its_feeders() -> None:
    # three vertices feed the output (11 channels: 4 + 4 + 3); vertex 1 also feeds vertex 2
    matrix = [[0, 1, 1, 1, 0], [0, 0, 1, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]]
    assert vertex_channels(5, 11, matrix) == [5, 4, 4, 3, 11]
    assert vertex_channels(5, 8, [[0, 1], [0, 0]]) == [5, 8]


def _sample(**changes: object) -> dict:
    sample = {"cell/num_nodes": 4, "cell/op1": "conv3x3-bn-relu", "cell/op2": "maxpool3x3",
              "cell/op3": "conv1x1-bn-relu", "cell/op4": "conv1x1-bn-relu", "cell/op5": "conv1x1-bn-relu",
              "cell/input1": [0], "cell/input2": [1], "cell/input3": [0, 2], "cell/input4": [],
              "cell/input5": [], "cell/input6": []}
    sample.update({f"cell/{k}": v for k, v in changes.items()})
    return sample


def test_constraint_and_frozen_cell() -> None:
    space = NasBench101(stem_out_channels=4, num_stacks=1, num_modules_per_stack=1, num_labels=2)
    assert space.contains(_sample())
    assert not space.contains(_sample(input3=[]))  # output fed by nothing: disconnected
    tight = NasBench101(stem_out_channels=4, num_stacks=1, num_modules_per_stack=1, max_num_edges=3)
    assert not tight.contains(_sample())  # 4 edges > 3
    with model_context(_sample()):
        model = NasBench101(stem_out_channels=4, num_stacks=1, num_modules_per_stack=1, num_labels=2)
    cell = model.features[0]
    assert cell.matrix == [[0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    assert [type(op).__name__ for op in cell.ops] == ["Identity", "ConvBNReLU", "MaxPool2d"]
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 2)
    with pytest.raises(RuntimeError, match="search space, not a network"):
        space(torch.randn(1, 3, 8, 8))
