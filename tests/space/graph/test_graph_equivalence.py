"""The graph format and the simplified format give the same models for the same samples."""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch
from graph_corpus import CORPUS
from graph_support import flat

from nasflow.space import SimplifiedModelSpace
from nasflow.space.graph import GraphModelSpace, load_weights_from

SAMPLES = 3


@pytest.fixture(scope="module", params=sorted(CORPUS))
def formats(request: pytest.FixtureRequest) -> tuple[str, Any, GraphModelSpace, SimplifiedModelSpace]:
    space_cls, make_input = CORPUS[request.param]
    torch.manual_seed(0)
    space = space_cls()
    return request.param, make_input, GraphModelSpace.from_model(space), SimplifiedModelSpace.from_model(space)


def test_same_labels_and_values(formats: Any) -> None:
    _, _, graph, simplified = formats
    graph_labels, simplified_labels = graph.simplify(), simplified.simplify()
    assert list(graph_labels) == list(simplified_labels) or set(graph_labels) == set(simplified_labels)
    for label, mutable in simplified_labels.items():
        assert graph_labels[label].equals(mutable), label


def _compare(graph: GraphModelSpace, simplified: SimplifiedModelSpace, sample: dict, make_input: Any) -> None:
    graph_model = graph.freeze(sample)
    simplified_model = simplified.freeze(sample)
    assert graph_model.sample == simplified_model.sample
    reference = simplified_model.executable_model().eval()
    generated = graph_model.executable_model().eval()
    report = load_weights_from(reference, generated, graph_model)
    # same architecture: every generated tensor has its counterpart with the same shape, and no more
    assert not report.skipped
    assert len(report.loaded) == len(reference.state_dict()) == len(generated.state_dict())
    x = make_input()
    with torch.no_grad():
        expected, got = flat(reference(x)), flat(generated(x))
    assert len(expected) == len(got)
    for a, b in zip(expected, got, strict=True):
        assert a.shape == b.shape
        assert (a - b).abs().max().item() < 1e-5


def test_simplified_samples_freeze_the_graph_format(formats: Any) -> None:
    name, make_input, graph, simplified = formats
    rng = random.Random(len(name))
    for _ in range(SAMPLES):
        sample: dict = {}
        simplified.random(sample, rng)
        _compare(graph, simplified, sample, make_input)


def test_graph_samples_freeze_the_simplified_format(formats: Any) -> None:
    name, make_input, graph, simplified = formats
    rng = random.Random(100 + len(name))
    for _ in range(SAMPLES):
        sample: dict = {}
        graph.random(sample, rng)
        _compare(graph, simplified, sample, make_input)


def test_default_sample_matches(formats: Any) -> None:
    _, make_input, graph, simplified = formats
    sample: dict = {}
    graph.default(sample)
    _compare(graph, simplified, sample, make_input)
