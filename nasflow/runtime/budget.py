"""``trial_budget()``: the training budget (e.g. epochs) a multi-fidelity strategy gave the running trial.

Multi-fidelity strategies (``SuccessiveHalving``, ``Hyperband``, ``ASHA``) train many models on a
small budget and promote the best to larger ones. The evaluator decides what a unit of budget is
(an epoch, a thousand steps, a fraction of the data) and reads how many units it has here:

    def train(model):
        for epoch in range(int(nasflow.trial_budget(default=20))):
            ...

The budget travels with the model's evaluator (``nasflow.evaluator.Budgeted``), so it reaches the
trial wherever it runs (in process, a local worker, a Ray node). Lightning evaluators read it as
their number of epochs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["trial_budget", "budget_scope"]

_local = threading.local()


def trial_budget(default: Any = None) -> Any:
    """The budget of the running trial, or ``default`` when no multi-fidelity strategy set one."""
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else default


@contextmanager
def budget_scope(budget: float) -> Iterator[float]:
    """Inside, ``trial_budget()`` returns ``budget`` (thread-local, nestable)."""
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    stack.append(budget)
    try:
        yield budget
    finally:
        stack.pop()
