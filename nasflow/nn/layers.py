"""Torch layers whose arguments may be mutables: ``MutableLinear(16, choice([32, 64]))``.

As in NNI, every module class of ``torch.nn`` has a ``Mutable<Name>`` here (a ``ParametrizedModule``
wrapping it): in a space it is the torch layer built with its arguments' defaults (so the space
runs); frozen, the plain torch layer built with the sampled arguments. This module also mirrors
``torch.nn`` (``import nasflow.nn.layers as nn`` works like NNI's ``nni.nas.nn.pytorch.layers``):
``nn.Conv2d`` accepts mutables too, while ``nn.Sequential``, ``nn.Module``, ``nn.Parameter``,
``nn.init`` and ``nn.functional`` are torch's own. ``nasflow.nn`` exports only the ``Mutable*`` names.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import torch
from torch import nn

from .parametrized import ParametrizedModule

# Not wrapped: not modules, modules whose arguments are modules, containers and utilities (NNI's list).
_PLAIN = {"Parameter", "ParameterList", "ParameterDict", "UninitializedBuffer", "UninitializedParameter", "Module",
          "Sequential", "Container", "DataParallel", "ModuleList", "ModuleDict", "Buffer"}


def _make(name: str, wrapped: type[nn.Module]) -> type:
    with warnings.catch_warnings():  # deprecated torch classes warn when subclassed; only their use should
        warnings.simplefilter("ignore")
        cls = type(name, (ParametrizedModule, wrapped), {"__module__": __name__, "__qualname__": name}, wraps=wrapped)
    cls.__doc__ = f"``torch.nn.{wrapped.__name__}`` whose arguments may be mutables."
    return cls


def _build() -> tuple[dict[str, Any], list[str]]:
    names: dict[str, Any] = {}
    mutable_names: list[str] = []
    for name, obj in inspect.getmembers(torch.nn):
        if name.startswith("_"):
            continue
        if inspect.isclass(obj) and issubclass(obj, nn.Module) and name not in _PLAIN:
            names[f"Mutable{name}"] = _make(f"Mutable{name}", obj)
            mutable_names.append(f"Mutable{name}")
            names[name] = _make(name, obj)
        elif inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj):
            names[name] = obj
    return names, mutable_names


_names, __all__ = _build()
globals().update(_names)
del _names
