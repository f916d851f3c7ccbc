"""A small deterministic search space (a model's metric is the sum of its layer widths) and a helper
that runs a strategy on it with the real sequential engine."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from torch import nn

import nasflow
from nasflow.evaluator import FunctionalEvaluator
from nasflow.execution import ModelEvent, ModelEventType, SequentialExecutionEngine
from nasflow.mutable import ExpressionConstraint
from nasflow.nn import ModelSpace, MutableLinear
from nasflow.space import ExecutableModelSpace, ModelStatus, SimplifiedModelSpace
from nasflow.strategy import Chain, Strategy
from nasflow.strategy.utils import sample_key

WIDTHS = (8, 16, 32, 64)


class WidthNet(ModelSpace):
    """``n_layers`` linear layers, each of a searched width; ``limit`` caps the sum of widths."""

    def __init__(self, n_layers: int = 3, widths: tuple[int, ...] = WIDTHS, limit: int | None = None) -> None:
        super().__init__()
        choices = [nasflow.choice(f"w{i}", list(widths)) for i in range(n_layers)]
        self.layers = nn.ModuleList([MutableLinear(4, choice) for choice in choices])
        if limit is not None:
            self.add_mutable(ExpressionConstraint(sum(choices[1:], choices[0]) <= limit, label="limit"))


def total_width(model: nn.Module) -> float:
    return float(sum(layer.out_features for layer in model.layers))


def width_score(model: nn.Module) -> None:
    nasflow.report_final_result(total_width(model))


@dataclass
class SearchResult:
    engine: SequentialExecutionEngine
    strategy: Strategy
    ended: list[ExecutableModelSpace]  # models in the order the strategy heard they ended
    heard: list[tuple[ModelStatus, float | None]]  # their status and metric when it heard

    @property
    def samples(self) -> list[dict[str, Any]]:
        """Samples the engine ran, in order (a retried model counts once)."""
        out, seen = [], set()
        for model in self.engine.list_models():
            if id(model) not in seen:
                seen.add(id(model))
                out.append(dict(model.sample))
        return out

    @property
    def keys(self) -> list[str]:
        return [sample_key(s) for s in self.samples]

    def state(self) -> dict[str, Any]:
        """The strategy's state as it would come back from a JSON file."""
        return json.loads(json.dumps(self.strategy.state_dict()))


@pytest.fixture
def make_space() -> Callable[..., SimplifiedModelSpace]:
    def make(n_layers: int = 3, widths: tuple[int, ...] = WIDTHS, limit: int | None = None,
             evaluate: Callable[..., Any] = width_score, **arguments: Any) -> SimplifiedModelSpace:
        return SimplifiedModelSpace.from_model(WidthNet(n_layers, widths, limit),
                                               FunctionalEvaluator(evaluate, **arguments))

    return make


@pytest.fixture
def search() -> Callable[..., SearchResult]:
    def run(strategy: Strategy, space: SimplifiedModelSpace, budget: int | None = None,
            state: dict[str, Any] | None = None, load_before_initialize: bool = False,
            continue_on_failure: bool = False) -> SearchResult:
        engine = SequentialExecutionEngine(max_model_count=budget, continue_on_failure=continue_on_failure)
        if state is not None and load_before_initialize:
            strategy.load_state_dict(state)
        strategy.initialize(space, engine)
        if state is not None and not load_before_initialize:
            strategy.load_state_dict(state)  # the experiment's order: initialize, then load
        ended: list[ExecutableModelSpace] = []
        heard: list[tuple[ModelStatus, float | None]] = []

        def on_end(event: ModelEvent) -> None:
            ended.append(event.model)
            heard.append((event.model.status, event.model.metric))

        top = strategy.strategy.engine if isinstance(strategy, Chain) else engine  # what the strategy hears
        top.register_model_event_callback(ModelEventType.TrainingEnd, on_end)
        strategy.run()
        return SearchResult(engine, strategy, ended, heard)

    return run


class Scripted(Strategy):
    """Submits the given samples in order (duplicates included): a strategy the test controls."""

    def __init__(self, samples: list[dict[str, Any]]) -> None:
        super().__init__()
        self.samples = samples
        self.submitted: list[ExecutableModelSpace] = []

    def _run(self) -> None:
        for sample in self.samples:
            if not self.wait_for_worker():
                break
            model = self.model_space.freeze(sample)
            self.submitted.append(model)
            self.engine.submit_models(model)
        self.engine.wait_models(wait_all=True)


@pytest.fixture
def scripted() -> type[Scripted]:
    return Scripted


def widths(*values: int) -> dict[str, int]:
    return {f"w{i}": v for i, v in enumerate(values)}


@pytest.fixture
def sample() -> Callable[..., dict[str, int]]:
    """``sample(8, 16, 32)`` -> ``{'w0': 8, 'w1': 16, 'w2': 32}``."""
    return widths
