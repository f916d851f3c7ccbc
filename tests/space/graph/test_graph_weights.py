"""Weights of the space (or of a frozen model of another format) load into generated modules by name."""

from __future__ import annotations

import random

import pytest
import torch
from graph_corpus import CORPUS

from nasflow.space.graph import GraphModelSpace, load_weights_from, weight_name_mapping


@pytest.mark.parametrize("name", ["cnn", "resnet", "darts", "nb201", "functional", "loop"])
def test_space_weights_give_the_raw_format_model(name: str) -> None:
    """Loading the space's own weights reproduces ``space.freeze(sample)`` (which keeps them)."""
    space_cls, make_input = CORPUS[name]
    torch.manual_seed(0)
    space = space_cls()
    graph = GraphModelSpace.from_model(space)
    sample: dict = {}
    graph.random(sample, random.Random(7))
    model = graph.freeze(sample)
    generated = model.executable_model().eval()
    report = load_weights_from(space, generated, model)
    assert report.source == "space" and not report.skipped
    raw = space.freeze(sample).eval()
    x = make_input()
    with torch.no_grad():
        expected, got = raw(x), generated(x)
    if isinstance(expected, dict):
        expected, got = expected["logits"], got["logits"]
    assert torch.allclose(expected, got, atol=1e-6)


def test_mapping_names_space_and_frozen_paths() -> None:
    graph = GraphModelSpace.from_model(CORPUS["resnet"][0]())
    sample: dict = {}
    graph.default(sample)
    model = graph.freeze({**sample, "resnet/stage1": 2, "resnet/stage1/2": 1})
    mapping = weight_name_mapping(model).modules
    assert mapping["stage1.blocks__1.conv__1"] == ("stage1.blocks.1.conv.1", "stage1.1.conv")
    assert mapping["stage3.blocks__0"] == ("stage3.blocks.0", "stage3.0")


def test_value_choices_that_change_shapes_are_skipped() -> None:
    torch.manual_seed(0)
    space = CORPUS["mobilenet"][0]()
    graph = GraphModelSpace.from_model(space)
    model = graph.freeze({"mb/width": 12, "mb/expand1": 2, "mb/k1": 3, "mb/expand2": 2, "mb/k2": 3})
    report = load_weights_from(space, model.executable_model(), model)
    assert report.source == "space"
    assert "stem.weight" in report.skipped and "classifier.weight" in report.loaded
    with pytest.raises(KeyError, match="No frozen weights"):
        load_weights_from(torch.nn.Linear(2, 2), model.executable_model(), model, source_kind="frozen")
