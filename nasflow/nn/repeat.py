"""``Repeat``: a chain of blocks whose depth is searched."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from torch import nn

from nasflow.mutable import Categorical, LabeledMutable, Mutable, Sample
from nasflow.mutable.labels import numbering_scope

from .base import MutableModule, check_module_contains, current_sample, freeze_module

__all__ = ["Repeat"]

BlockSpec = nn.Module | Callable[[int], nn.Module] | list[nn.Module | Callable[[int], nn.Module]]


def _depth_mutable(depth: Any, label: str | None) -> tuple[Any, int]:
    """The depth as a mutable (or int) and the largest depth it allows.

    Only a ``(min, max)`` range makes a choice of its own (labelled ``label``, or automatically);
    a mutable depth keeps its label, and a fixed depth has none (NNI's rules).
    """
    if isinstance(depth, int) and not isinstance(depth, bool):
        if depth < 0:
            raise ValueError(f"Repeat {label!r}: depth must be >= 0, got {depth}.")
        return depth, depth
    if isinstance(depth, tuple) and len(depth) == 2:
        low, high = depth
        if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high):
            raise ValueError(f"Repeat {label!r}: depth range must be (min, max) with 0 <= min <= max, got {depth}.")
        return Categorical(list(range(low, high + 1)), label=label), high
    if isinstance(depth, Mutable):
        values = list(depth.grid())
        if not values or not all(isinstance(v, int) and v >= 0 for v in values):
            raise ValueError(f"Repeat {label!r}: a depth mutable must take non-negative integers, got {values[:5]}.")
        return depth, max(values)
    raise TypeError(f"Repeat {label!r}: depth must be an int, a (min, max) tuple or a mutable, got {depth!r}.")


def _block_scope(depth: Any) -> Any:
    """Where the blocks' unlabelled choices are numbered: under a searched depth's label, so the
    frozen model (which builds only the chosen blocks) numbers them as the space did."""
    return numbering_scope(depth.label) if isinstance(depth, LabeledMutable) else nullcontext()


def _make_blocks(blocks: BlockSpec, count: int, label: str | None) -> list[nn.Module]:
    """The first ``count`` blocks. As NNI documents: one module is deep-copied for each repetition, a
    factory is called with the block's index, and a list gives block ``i`` as its item ``i`` (a module,
    or a factory called with ``i``). No label scope of its own: the blocks' choices are labelled where
    Repeat is."""
    listed = isinstance(blocks, (list, tuple, nn.ModuleList))
    if listed and len(blocks) < count:  # type: ignore[arg-type]
        raise ValueError(f"Repeat {label!r}: {len(blocks)} blocks given, but the depth can reach {count}.")
    made: list[nn.Module] = []
    for index in range(count):
        spec = blocks[index] if listed else blocks  # type: ignore[index]
        if isinstance(spec, nn.Module):
            made.append(spec if listed or index == 0 else copy.deepcopy(spec))
        elif callable(spec):
            made.append(spec(index))
        else:
            raise TypeError(f"Repeat {label!r}: blocks must be a module, a factory taking the block index, or a "
                            f"list of those; got {spec!r}.")
        if not isinstance(made[-1], nn.Module):
            raise TypeError(f"Repeat {label!r}: the factory for block {index} returned {made[-1]!r}, not a module.")
    return made


def _name(depth: Any, label: str | None) -> str | None:
    """What error messages call this Repeat."""
    return depth.label if isinstance(depth, LabeledMutable) else label


class Repeat(MutableModule):
    """``depth`` blocks in sequence: ``depth`` an int, a ``(min, max)`` range or a mutable.

    ``blocks``: one module (copied for each repetition), a factory ``index -> module``, or a list
    of modules or factories (item ``i`` makes block ``i``). Built inside ``model_context``, it
    returns an ``nn.Sequential``.
    """

    def __new__(cls, blocks: BlockSpec | None = None, depth: Any = 1, *, label: str | None = None) -> Any:
        sample = current_sample()
        if sample is None:
            return super().__new__(cls)
        depth_mutable, max_depth = _depth_mutable(depth, label)
        chosen = depth_mutable.freeze(sample) if isinstance(depth_mutable, Mutable) else depth_mutable
        # an unlabelled depth expression gives no numbering scope: build every block, as the space did
        built = max_depth if isinstance(depth_mutable, Mutable) and not isinstance(depth_mutable, LabeledMutable) \
            else chosen
        with _block_scope(depth_mutable):
            made = _make_blocks(blocks, built, _name(depth_mutable, label))  # type: ignore[arg-type]
        return nn.Sequential(*made[:chosen])

    def __init__(self, blocks: BlockSpec, depth: Any, *, label: str | None = None) -> None:
        super().__init__()
        if isinstance(depth, Mutable) and label is not None:
            warnings.warn(f"Repeat: depth is already the mutable {depth!r}, so label={label!r} is ignored.",
                          RuntimeWarning, stacklevel=2)
        self.depth_choice, self.max_depth = _depth_mutable(depth, label)
        self._label = self.depth_choice.label if isinstance(self.depth_choice, LabeledMutable) else None
        if isinstance(self.depth_choice, Mutable):
            self.add_mutable(self.depth_choice)
        with _block_scope(self.depth_choice):
            self.blocks = nn.ModuleList(_make_blocks(blocks, self.max_depth, _name(self.depth_choice, label)))

    @property
    def label(self) -> str | None:
        """The depth choice's label; None for a fixed depth (or a depth expression)."""
        return self._label

    def depth(self, sample: Sample | None = None) -> int:
        if not isinstance(self.depth_choice, Mutable):
            return self.depth_choice
        return self.depth_choice.freeze(sample) if sample is not None else self.depth_choice.default()

    def check_contains(self, sample: Sample) -> Any:
        """The depth, then only the blocks that depth keeps (NNI: a sample needs nothing for the rest)."""
        if isinstance(self.depth_choice, Mutable):
            err = self.depth_choice.check_contains(sample)
            if err is not None:
                return err
        for index, block in enumerate(self.blocks[: self.depth(sample)]):
            err = check_module_contains(block, sample)
            if err is not None:
                err.paths.append(str(index))
                return err
        return None

    def freeze_shallow(self, sample: Sample) -> nn.Module:
        return nn.Sequential(*(freeze_module(block, sample) for block in self.blocks[: self.depth(sample)]))

    def forward(self, x: Any) -> Any:
        for block in self.blocks[: self.depth()]:
            x = block(x)
        return x

    def __getitem__(self, index: int) -> nn.Module:
        return self.blocks[index]

    def __len__(self) -> int:
        return self.max_depth

    def extra_repr(self) -> str:
        return f"depth={self.depth_choice!r}, label={self.label!r}"
