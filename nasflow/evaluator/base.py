"""Evaluators: how a model is trained and scored. They report through ``nasflow.report_*``."""

from __future__ import annotations

import abc
import copy
import logging
from collections.abc import Callable, Iterator
from typing import Any

from torch import nn

from nasflow.mutable import LabeledMutable, Mutable, Sample, mutable_equal
from nasflow.mutable.base import IsLeaf
from nasflow.runtime import MetricValue, trial_context
from nasflow.space.metrics import MetricDirection, Metrics

__all__ = ["Evaluator", "FunctionalEvaluator", "FrozenEvaluator", "evaluate_model"]

_logger = logging.getLogger(__name__)


class Evaluator(Mutable, abc.ABC):
    """Trains and scores one model. May hold mutables (e.g. a searched learning rate).

    ``metric_direction`` says whether the reported ``'default'`` metric is better higher
    (``'maximize'``, as NNI assumes everywhere) or lower (``'minimize'``: an error such as
    Regression's MSE). Strategies, exports and the dashboard rank models by it.
    """

    metric_direction: MetricDirection = "maximize"

    @abc.abstractmethod
    def evaluate(self, model: nn.Module) -> Any:
        """Train/test ``model``, calling ``nasflow.report_final_result`` (and intermediates)."""

    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterator[LabeledMutable]:
        return iter(())

    def freeze(self, sample: Sample) -> Evaluator:
        return self

    def get(self) -> Evaluator:
        """The evaluator itself (NNI's frozen evaluators are lazy wrappers with ``get()``; nasflow's are
        the evaluator)."""
        return self


class FunctionalEvaluator(Evaluator):
    """``FunctionalEvaluator(fn, **kwargs)`` calls ``fn(model, **kwargs)``.

    Keyword arguments may be mutables (``learning_rate=nasflow.choice('lr', [0.1, 0.01])``): they
    join the search space, the strategy samples them with the model, and each trial's evaluator is
    frozen with the sample (``model.evaluator.arguments`` then holds plain values).
    """

    def __init__(self, function: Callable[..., Any], **arguments: Any) -> None:
        if not callable(function):
            raise TypeError(f"FunctionalEvaluator needs a callable, got {function!r}.")
        self.function = function
        self.arguments = arguments

    @property
    def trace_kwargs(self) -> dict[str, Any]:
        return {"function": self.function, **self.arguments}

    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterator[LabeledMutable]:
        for value in self.arguments.values():
            if isinstance(value, Mutable):
                yield from value.leaf_mutables(is_leaf)

    def freeze(self, sample: Sample) -> FunctionalEvaluator:
        frozen = copy.copy(self)  # keeps what was set on it, such as metric_direction
        frozen.arguments = {k: v.freeze(sample) if isinstance(v, Mutable) else v for k, v in self.arguments.items()}
        return frozen

    def evaluate(self, model: nn.Module) -> Any:
        return self.function(model, **self.arguments)

    def check_contains(self, sample: Sample) -> Any:
        for value in self.arguments.values():
            if isinstance(value, Mutable):
                err = value.check_contains(sample)
                if err is not None:
                    return err
        return None

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, FunctionalEvaluator) and other.function is self.function
                and mutable_equal(other.arguments, self.arguments))

    def equals(self, other: Any) -> bool:
        return self == other

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"FunctionalEvaluator({self.function!r}, arguments={self.arguments!r})"


FrozenEvaluator = Evaluator  # NNI's frozen evaluators are evaluators here (``get()`` returns the evaluator)


def evaluate_model(model: Any, evaluator: Evaluator | None = None) -> Metrics:
    """Run ``evaluator`` on ``model`` here and now, outside any experiment, and return its metrics.

    ``model`` is a torch module or a frozen ``ExecutableModelSpace`` (whose evaluator is used when
    none is given). Meant for debugging an evaluator before launching a search.
    """
    metrics = Metrics(strict=False)  # as reported: dict metrics stay whole
    if not isinstance(model, nn.Module):
        evaluator = evaluator or model.evaluator
        model = model.executable_model()
    if evaluator is None:
        raise ValueError("evaluate_model needs an evaluator (or a model that carries one).")

    def emit(kind: str, value: MetricValue) -> None:
        _logger.info("%s metric: %s", kind, value)
        if kind == "intermediate":
            metrics.intermediates.append(value)
        else:
            metrics.final = value

    with trial_context(emit):
        evaluator.evaluate(model)
    return metrics
