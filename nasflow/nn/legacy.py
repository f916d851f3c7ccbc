"""NNI 2.x decorators that ported code may still use: ``basic_unit`` works, ``model_wrapper`` explains."""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["basic_unit", "model_wrapper", "MutationAnchor"]


def basic_unit(cls: type, basic_unit_tag: bool = True) -> type:
    """NNI 2.x's ``@basic_unit``: marks a module as one graph node. Prefer subclassing ``ParametrizedModule``."""
    warnings.warn("basic_unit is deprecated (as in NNI 3.0); subclass nasflow.nn.ParametrizedModule instead.",
                  DeprecationWarning, stacklevel=2)
    cls._nni_basic_unit = basic_unit_tag  # type: ignore[attr-defined]
    return cls


def model_wrapper(cls: Any) -> Any:
    """NNI 2.x's ``@model_wrapper`` is replaced by subclassing ``ModelSpace`` (as in NNI 3.0)."""
    raise TypeError(
        f"@model_wrapper (NNI 2.x) is not supported: define `class {getattr(cls, '__name__', 'Net')}"
        "(nasflow.nn.ModelSpace)` instead of wrapping an nn.Module (NNI 3.0's way), and label its choices."
    )


class MutationAnchor:
    """NNI's placeholder for hand-written graph mutators, which nasflow does not port."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            "MutationAnchor (NNI's anchor for custom graph Mutators) is not supported: express the decision with "
            "LayerChoice, InputChoice, Repeat, Cell or a Mutable* layer, which every format (graph included) mutates."
        )
