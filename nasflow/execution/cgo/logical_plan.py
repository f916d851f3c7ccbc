"""The logical plan of cross-graph optimization: which models train together, and how.

A plan starts naive, :meth:`LogicalPlan.from_models`: every model reads its own input, as if it
loaded its own data. Optimizers rewrite it:

- :class:`DedupInputOptimizer` collapses input nodes that read the same data pipeline (equal
  :func:`data_signature`, which includes a multi-fidelity strategy's training budget) into one, so
  each batch is made once and fed to every consumer. A model whose evaluator cannot train merged
  exactly has no signature and keeps its own input.
- :class:`BatchingOptimizer` groups the consumers of an input that share their structure (equal
  :func:`structure_signature`: the same graph IR, whatever their weights or training
  hyperparameters) into batch groups, which train as one vectorized module.

:meth:`LogicalPlan.trials` then cuts each input's consumers into trials of at most ``limit``
models, keeping batch groups together. A trial's plan travels to the worker, where the physical
plan (``MergedTrial``) builds the models, places them on the trial's devices and trains them.
"""

from __future__ import annotations

import hashlib
import logging
import weakref
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nasflow.space import ExecutableModelSpace

__all__ = [
    "LogicalPlan", "InputNode", "DedupInputOptimizer", "BatchingOptimizer", "optimize", "data_signature",
    "structure_signature", "unwrap_budget",
]

_logger = logging.getLogger(__name__)
_told: set[str] = set()
# A frozen model's evaluator and IR do not change: its signatures are computed once (the middleware
# re-plans its queue whenever the strategy asks for a free worker).
_memo: weakref.WeakKeyDictionary[ExecutableModelSpace, dict[str, Any]] = weakref.WeakKeyDictionary()


def _memoized(model: ExecutableModelSpace, name: str, compute: Callable[[ExecutableModelSpace], Any]) -> Any:
    values = _memo.setdefault(model, {})
    if name not in values:
        values[name] = compute(model)
    return values[name]


def data_signature(model: ExecutableModelSpace) -> Hashable | None:
    """What a model's evaluator reads (dataloaders, datamodule, trainer settings), or None when the
    model cannot train merged (its evaluator cannot tell, or training it merged would not be exact)."""
    return _memoized(model, "data", _data_signature)


def structure_signature(model: ExecutableModelSpace) -> str | None:
    """A digest of the model's architecture (its graph IR, weights and evaluator left out), or None
    for a model that is not in graph format. Equal digests mean the same generated code."""
    return _memoized(model, "structure", _structure_signature)


def unwrap_budget(evaluator: Any) -> tuple[Any, float | None]:
    """A multi-fidelity strategy's ``Budgeted`` evaluator as (inner evaluator, budget); others as (it, None)."""
    from nasflow.evaluator.budget import Budgeted

    return (evaluator.evaluator, evaluator.budget) if isinstance(evaluator, Budgeted) else (evaluator, None)


def _data_signature(model: ExecutableModelSpace) -> Hashable | None:
    evaluator, budget = unwrap_budget(model.evaluator)  # models merge only under one training budget
    signature = getattr(evaluator, "data_signature", None)
    if not callable(signature):
        return None
    from nasflow.evaluator.multi_model import evaluator_merge_refusal

    reason = evaluator_merge_refusal(evaluator)
    if reason is not None:
        if reason not in _told:
            _told.add(reason)
            _logger.info("CGO: models are not merged because %s; each trains alone.", reason)
        return None
    return (signature(), budget)


def _structure_signature(model: ExecutableModelSpace) -> str | None:
    from nasflow.space.graph import GraphModelSpace

    if not isinstance(model, GraphModelSpace) or model.sample is None:
        return None
    digest = hashlib.sha256(model.root_name.encode())
    for name in model.reachable_graphs():  # each graph's JSON is cached by the IR
        digest.update(f"\0{name}\0{model.graphs[name].dump_json()}".encode())
    return digest.hexdigest()


@dataclass
class InputNode:
    """One data pipeline, the models (plan indices) it feeds, and which of them train batched."""

    signature: Hashable | None = field(repr=False)
    consumers: list[int] = field(default_factory=list)
    batch_groups: list[list[int]] = field(default_factory=list)


@dataclass
class LogicalPlan:
    """Models to train, and the input nodes that feed them. Index order is submission order."""

    models: list[ExecutableModelSpace]
    inputs: list[InputNode] = field(default_factory=list)

    @classmethod
    def from_models(cls, models: Sequence[ExecutableModelSpace]) -> LogicalPlan:
        """The naive plan: every model reads its own input."""
        return cls(list(models), [InputNode(data_signature(m), [i]) for i, m in enumerate(models)])

    @property
    def batch_groups(self) -> list[list[int]]:
        return [group for node in self.inputs for group in node.batch_groups]

    def trials(self, limit: int) -> list[LogicalPlan]:
        """One plan per trial: each input's consumers in trials of at most ``limit`` models.

        Units (a batch group, or a lone model) are packed first-fit in order of their oldest model,
        so a group stays in one trial when it fits and later small units fill the gaps; a group
        larger than a trial is cut into full trials. A model that cannot merge is a trial alone.
        """
        plans = []
        for node in self.inputs:
            if node.signature is None:
                plans.extend(LogicalPlan([self.models[i]], [InputNode(None, [0])]) for i in node.consumers)
                continue
            grouped = {i for group in node.batch_groups for i in group}
            units = sorted([sorted(g) for g in node.batch_groups] + [[i] for i in node.consumers if i not in grouped],
                           key=min)
            chunks: list[list[int]] = []
            for unit in units:
                while len(unit) > limit:
                    chunks.append(unit[:limit])
                    unit = unit[limit:]
                room = next((chunk for chunk in chunks if len(chunk) + len(unit) <= limit), None)
                if room is None:
                    chunks.append(list(unit))
                else:
                    room.extend(unit)
            for chunk in chunks:
                position = {model: k for k, model in enumerate(chunk)}
                groups = [[position[i] for i in group if i in position] for group in node.batch_groups]
                plans.append(LogicalPlan([self.models[i] for i in chunk],
                                         [InputNode(node.signature, list(range(len(chunk))),
                                                    [g for g in groups if len(g) > 1])]))
        return plans


class DedupInputOptimizer:
    """Merge input nodes that read the same data into one (the point of cross-graph optimization)."""

    def convert(self, plan: LogicalPlan) -> LogicalPlan:
        merged: list[InputNode] = []
        by_signature: dict[Hashable, InputNode] = {}
        for node in plan.inputs:
            same = by_signature.get(node.signature) if node.signature is not None else None
            if same is None:
                copy = InputNode(node.signature, list(node.consumers), [list(g) for g in node.batch_groups])
                merged.append(copy)
                if node.signature is not None:
                    by_signature[node.signature] = copy
            else:
                same.consumers.extend(node.consumers)
                same.batch_groups.extend(list(g) for g in node.batch_groups)
        return LogicalPlan(plan.models, merged)


class BatchingOptimizer:
    """Group the consumers of each shared input by architecture: models with the same structure
    (other seeds, other learning rates) train as one vectorized module."""

    def convert(self, plan: LogicalPlan) -> LogicalPlan:
        inputs = []
        for node in plan.inputs:
            if node.signature is None:
                inputs.append(node)
                continue
            by_structure: dict[str, list[int]] = {}
            for index in node.consumers:
                signature = structure_signature(plan.models[index])
                if signature is not None:
                    by_structure.setdefault(signature, []).append(index)
            groups = [group for group in by_structure.values() if len(group) > 1]
            inputs.append(InputNode(node.signature, list(node.consumers), groups))
        return LogicalPlan(plan.models, inputs)


def optimize(plan: LogicalPlan, batching: bool = True) -> LogicalPlan:
    """The plan after input deduplication and (``batching``) operator batching."""
    plan = DedupInputOptimizer().convert(plan)
    return BatchingOptimizer().convert(plan) if batching else plan
