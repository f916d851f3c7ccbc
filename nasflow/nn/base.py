"""Model spaces as torch modules: ``MutableModule`` and how a module tree is frozen.

Two ways lead from a space to one model, and both give the same architecture:
- *in place* (``space.freeze(sample)``): each mutable module in the tree is replaced by what the
  sample makes of it, keeping the weights of whatever is kept (the raw format);
- *rebuild* (``with model_context(sample): Space(*args)``): the constructor runs again and each
  mutable module, seeing the sample in force, builds its frozen form directly (the simplified format).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from torch import nn

from nasflow.mutable import LabeledMutable, Mutable, Sample
from nasflow.mutable.base import IsLeaf
from nasflow.mutable.frozen import frozen_context
from nasflow.mutable.labels import strict_label_scope

from .init_recording import _RECORD_KEY as INIT_RECORD_KEY

__all__ = ["MutableModule", "freeze_module", "recursive_freeze", "module_leaf_mutables", "check_module_contains",
           "current_sample",
           "strict_label_scope"]


def current_sample() -> Sample | None:
    """The sample in force while a space is being built as a frozen model, if any."""
    return frozen_context.current_model()


class MutableModule(Mutable, nn.Module):
    """A torch module that holds decisions: its own mutables plus those of mutable descendants."""

    def __init__(self) -> None:
        nn.Module.__init__(self)
        self._mutables: list[Mutable] = []

    def add_mutable(self, mutable: Mutable) -> Mutable:
        """Make ``mutable`` part of this module's space (it is not a submodule, just a decision)."""
        if isinstance(mutable, MutableModule):
            return mutable  # a submodule: registered by assigning it, as any module
        if not isinstance(mutable, Mutable):
            raise TypeError(f"add_mutable expects a mutable (e.g. nasflow.choice(...)), got {type(mutable)}: "
                            f"{mutable!r}")
        if not any(m is mutable for m in self.mutables):
            self.mutables.append(mutable)
        return mutable

    @property
    def mutables(self) -> list[Mutable]:
        if "_mutables" not in self.__dict__:
            self.__dict__["_mutables"] = []
        return self.__dict__["_mutables"]

    def leaf_mutables(self, is_leaf: IsLeaf = None) -> Iterator[LabeledMutable]:
        if is_leaf is not None and getattr(self, "label", None) and is_leaf(self):  # type: ignore[arg-type]
            yield self  # type: ignore[misc]
            return
        for mutable in self.mutables:
            yield from mutable.leaf_mutables(is_leaf)
        for child in self.children():
            yield from module_leaf_mutables(child, is_leaf)

    def check_contains(self, sample: Sample) -> Any:
        """Check this module's own mutables, then its mutable descendants (a LayerChoice only checks
        the chosen candidate, so a sample needs no value for what it does not pick, as in NNI)."""
        for mutable in self.mutables:
            err = mutable.check_contains(sample)
            if err is not None:
                return err
        return check_module_contains(self, sample, own=False)

    def mutable_descendants(self) -> Iterator[MutableModule]:
        """The nearest ``MutableModule``s below this one (looking through plain modules)."""
        for _, module in self.named_mutable_descendants():
            yield module

    def named_mutable_descendants(self) -> Iterator[tuple[str, MutableModule]]:
        def walk(prefix: str, module: nn.Module) -> Iterator[tuple[str, MutableModule]]:
            for name, child in module.named_children():
                path = f"{prefix}.{name}" if prefix else name
                if isinstance(child, MutableModule):
                    yield path, child
                else:
                    yield from walk(path, child)

        yield from walk("", self)

    def freeze(self, sample: Sample) -> nn.Module:
        """A plain module for ``sample``, with the weights of every kept part (copied)."""
        self.validate(sample)
        return copy.deepcopy(self.freeze_shallow(sample))

    def freeze_shallow(self, sample: Sample) -> nn.Module:
        """This module frozen, sharing (not copying) kept submodules. Override to change the type."""
        new = copy_with_children(self, sample)
        new.__dict__["_mutables"] = []
        return new

    def __repr__(self) -> str:  # nn.Module's repr, not Mutable's
        return nn.Module.__repr__(self)


def check_module_contains(module: nn.Module, sample: Sample, own: bool = True) -> Any:
    """The first error of ``module`` (itself when ``own`` and mutable) or its mutable descendants
    under ``sample``, with the module path appended to the error's paths (NNI's convention)."""
    if own and isinstance(module, MutableModule):
        return module.check_contains(sample)
    for path, child in MutableModule.named_mutable_descendants(module):  # type: ignore[arg-type]
        err = child.check_contains(sample)
        if err is not None:
            err.paths.append(path)
            return err
    return None


def module_leaf_mutables(module: nn.Module, is_leaf: IsLeaf = None) -> Iterator[LabeledMutable]:
    """Leaf mutables anywhere below ``module``, looking through plain torch containers."""
    if isinstance(module, MutableModule):
        yield from module.leaf_mutables(is_leaf)
        return
    for child in module.children():
        yield from module_leaf_mutables(child, is_leaf)


def has_mutables(module: nn.Module) -> bool:
    """Whether freezing can change ``module``: it has decisions, or a mutable module whose frozen
    form is another type (a ``MutableLinear`` becomes ``nn.Linear`` even with plain arguments)."""
    return any(isinstance(m, MutableModule) for m in module.modules())


def freeze_module(module: nn.Module, sample: Sample) -> nn.Module:
    """``module`` with every mutable descendant frozen; untouched subtrees are shared, not copied."""
    if isinstance(module, MutableModule):
        return module.freeze_shallow(sample)
    if not has_mutables(module):
        return module
    return copy_with_children(module, sample)


def recursive_freeze(module: nn.Module, sample: Sample, include_root: bool = True) -> tuple[nn.Module, bool]:
    """NNI's helper: ``(frozen module, whether anything was replaced)``; ``include_root=False`` freezes
    only the descendants of a mutable ``module``."""
    if include_root or not isinstance(module, MutableModule):
        if not has_mutables(module):
            return module, False
        return copy.deepcopy(freeze_module(module, sample)), True
    return copy.deepcopy(copy_with_children(module, sample)), has_mutables(module)


def copy_with_children(module: nn.Module, sample: Sample) -> nn.Module:
    """A shallow copy of ``module`` whose children are frozen.

    The record of how the original was constructed (the init arguments kept for the graph format)
    names the original, unfrozen children, so the copy drops it: kept, it would describe the wrong
    modules and make every frozen model reference (and deep-copy) the whole space.
    """
    new = copy.copy(module)
    new.__dict__["_modules"] = {name: freeze_module(child, sample) if child is not None else None
                                for name, child in module._modules.items()}
    new.__dict__.pop(INIT_RECORD_KEY, None)
    return new
