"""Turning a model space into a supernet, in place, and refusing what a strategy cannot search.

The space's modules are visited top-down (NNI's order); for each, the strategy's mutation hooks run
first, then the defaults: ``LayerChoice`` -> :class:`MixedLayer`, ``InputChoice`` -> :class:`MixedInput`,
a ``Repeat`` of searched depth -> :class:`MixedRepeat`, a ``Mutable*`` layer with choices ->
:class:`MixedOperation`; a ``Cell`` keeps its class (its op and input choices become mixed). Any other
module that still holds a choice is refused with its label, since training it would silently search
nothing. The supernet's ``simplify()`` is the space's, label for label.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from nasflow.mutable import (
    Categorical,
    CategoricalMultiple,
    Constraint,
    LabeledMutable,
    Mutable,
    dedup_labeled_mutables,
)
from nasflow.nn import Cell, InputChoice, LayerChoice, ModelSpace, Repeat
from nasflow.nn.base import MutableModule, module_leaf_mutables
from nasflow.nn.parametrized import ParametrizedModule

from .architecture import Architecture, UnsupportedChoiceError
from .mixed import MixedInput, MixedLayer, MixedRepeat, SupernetModule
from .mixed_cell import EdgeCell, MixedCell
from .mixed_op import MixedOperation

__all__ = ["Support", "MutationHook", "build_supernet", "check_labels", "is_supernet", "rebuilds_models"]

_logger = logging.getLogger(__name__)

MutationHookResult = nn.Module | bool | tuple[nn.Module | None, bool] | None
MutationHook = Callable[[nn.Module, str, dict[str, Any], dict[str, Any]], MutationHookResult]


@dataclass(frozen=True)
class Support:
    """What a strategy can search (checked label by label and module by module before training)."""

    strategy: str
    relaxed: bool = False  # candidates are mixed by weight (DARTS): every label needs logits
    gated: bool = False  # ProxylessNAS binary gates: one sampled path, gradient to the logits
    mixed_operations: bool = True  # choices in Mutable* layers' arguments
    constraints: bool = False
    continuous: bool = False  # Numerical choices
    any_number_of_inputs: bool = False  # InputChoice(n_chosen=None)
    several_inputs: bool = True  # InputChoice(n_chosen > 1)

    def refuse(self, what: str, fix: str) -> UnsupportedChoiceError:
        return UnsupportedChoiceError(f"{self.strategy} cannot search {what}. {fix}")


def check_labels(mutables: dict[str, LabeledMutable], support: Support) -> None:
    """Refuse a label of a kind the strategy cannot search (first found, by its label)."""
    for label, mutable in mutables.items():
        if isinstance(mutable, Constraint):
            if not support.constraints:
                raise support.refuse(f"the constraint {label!r}",
                                     "Only RandomOneShot samples under constraints; remove it, or use RandomOneShot.")
        elif isinstance(mutable, CategoricalMultiple):
            if mutable.n_chosen is None and not support.any_number_of_inputs:
                raise support.refuse(f"{label!r}, a choice of any number of inputs (n_chosen=None)",
                                     "Give it a fixed n_chosen, or use RandomOneShot or ENAS.")
            if mutable.n_chosen is not None and mutable.n_chosen > 1 and not support.several_inputs:
                raise support.refuse(f"{label!r}, a choice of {mutable.n_chosen} inputs",
                                     "Use n_chosen=1, or DARTS / RandomOneShot.")
        elif not isinstance(mutable, Categorical) and not support.continuous:
            raise support.refuse(f"{label!r} ({type(mutable).__name__}), which is not categorical",
                                 "Make it a categorical choice (nasflow.choice), or use RandomOneShot.")


def rebuilds_models(space: nn.Module) -> bool:
    """Whether ``space.freeze`` builds a sample's model anew (its own ``freeze``, as NNI's NASNet family),
    rather than freezing the space in place: then the model gets fresh weights, not the supernet's."""
    return isinstance(space, ModelSpace) and type(space).freeze is not ModelSpace.freeze


def is_supernet(module: nn.Module) -> bool:
    """Whether ``module`` (or a module in it) was turned into a supernet module."""
    return any(isinstance(m, SupernetModule) for m in module.modules())


def _default_conversion(module: nn.Module, path: str, arch: Architecture, support: Support,
                        rebuilt: bool = False) -> nn.Module | None:
    """The built-in replacement for ``module``, None to keep it; refuses what ``support`` excludes."""
    where = f"module {path!r}"
    if isinstance(module, LayerChoice):
        return MixedLayer(module, arch)
    if isinstance(module, InputChoice):
        several = module.n_chosen is None or module.n_chosen > 1
        if support.relaxed and several and module.reduction not in ("sum", "mean"):
            raise support.refuse(f"the InputChoice {module.label!r} at {where}, which chooses several inputs and "
                                 f"reduces them with {module.reduction!r}",
                                 "A relaxed mixture can only sum or average inputs: use reduction='sum' or 'mean'.")
        return MixedInput(module, arch)
    if isinstance(module, Repeat):
        if not isinstance(module.depth_choice, Mutable):
            return None
        if support.gated and not isinstance(module.depth_choice, Categorical):
            raise support.refuse(f"the depth of Repeat {module.label!r}, an expression of choices",
                                 "Give the depth as a (min, max) range or one nasflow.choice.")
        return MixedRepeat(module, arch)
    if isinstance(module, Cell):
        if support.relaxed and module.merge_op != "all":
            raise support.refuse(f"the Cell {module.label!r} with merge_op={module.merge_op!r}",
                                 "Its output depends on which inputs are chosen; use merge_op='all', or a "
                                 "sampling strategy (RandomOneShot, ENAS, Proxyless).")
        if getattr(module, "op_candidates_factory", None) is not None:  # operations depend on the chosen input
            if support.gated:
                raise support.refuse(f"the Cell {module.label!r}, whose operations depend on their input",
                                     "Its operations live on edges, which binary gates cannot pick; use DARTS, "
                                     "GumbelDARTS, RandomOneShot or ENAS.")
            return EdgeCell(module, arch, keep_places=rebuilt)
        return MixedCell(module, arch, keep_places=rebuilt) if module.merge_op == "loose_end" else None
    if isinstance(module, ParametrizedModule) and module.mutables:
        labels = sorted({leaf.label for m in module.mutables for leaf in m.leaf_mutables()})
        if type(module)._wraps is None:
            raise support.refuse(f"the choices {labels} in the arguments of {type(module).__name__} at {where}",
                                 "A supernet shares weights only through LayerChoice, InputChoice, Repeat, Cell and "
                                 "the Mutable* layers: build the module from those, or pass a mutation hook.")
        if not support.mixed_operations:
            raise support.refuse(f"the choices {labels} in the arguments of {type(module).__name__} at {where}",
                                 "It searches LayerChoice, InputChoice and Repeat only; use DARTS, GumbelDARTS, "
                                 "RandomOneShot or ENAS for choices inside layers.")
        return MixedOperation(module, arch, path)
    return None


def _refuse_dangling(module: nn.Module, path: str, support: Support) -> None:
    if not isinstance(module, MutableModule) or isinstance(module, SupernetModule):
        return
    if isinstance(module, (LayerChoice, InputChoice, Repeat, Cell, ParametrizedModule)):
        return
    dangling = [m for m in module.mutables if not isinstance(m, Constraint)]
    if dangling:
        labels = sorted({leaf.label for m in dangling for leaf in m.leaf_mutables()})
        kind = "a choice made in Python while building (ensure_frozen)" if isinstance(module, ModelSpace) \
            else f"a choice of the custom module {type(module).__name__}"
        raise support.refuse(f"{labels}, {kind} at {'the space root' if not path else repr(path)}",
                             "A supernet cannot train a choice it cannot see in the modules: express it with "
                             "LayerChoice / InputChoice / Repeat / Mutable* layers, or pass a mutation hook.")


def _run_hooks(hooks: list[MutationHook], module: nn.Module, path: str, memo: dict[str, Any],
               mutate_kwargs: dict[str, Any]) -> nn.Module | None:
    """NNI's hook protocol: a hook returns a module (replace, stop), a bool (True: stop, keep), None,
    or ``(module or None, stop)``; later hooks see earlier replacements."""
    replaced: nn.Module | None = None
    for hook in hooks:
        result = hook(module, path, memo, mutate_kwargs)
        if isinstance(result, tuple):
            suggestion, stop = result
        elif isinstance(result, nn.Module):
            suggestion, stop = result, True
        elif result is None or isinstance(result, bool):
            suggestion, stop = None, bool(result)
        else:
            raise TypeError(f"Mutation hook {hook!r} returned {result!r} for {path!r}; return a module, a bool, "
                            "None or (module or None, bool).")
        if suggestion is not None:
            if not isinstance(suggestion, SupernetModule):
                _logger.warning("The mutation hook replaced %r with a %s, not a SupernetModule: it is trained, but no "
                                "strategy decision reaches it.", path, type(suggestion).__name__)
            module = replaced = suggestion
        if stop:
            break
    return replaced


def build_supernet(space: nn.Module, arch: Architecture, support: Support,
                   hooks: list[MutationHook] = ()) -> nn.Module:  # type: ignore[assignment]
    """Turn ``space`` into a supernet in place (see the module docstring); returns ``space``.

    ``hooks`` run before the built-ins, each called as ``hook(module, path, memo, {'arch': arch,
    'support': support})``.
    """
    _refuse_dangling(space, "", support)
    done: dict[int, nn.Module] = {}
    memo: dict[str, Any] = {}
    mutate_kwargs = {"arch": arch, "support": support}

    rebuilt = rebuilds_models(space)

    def default(module: nn.Module, path: str, _memo: dict[str, Any], _kwargs: dict[str, Any]) -> MutationHookResult:
        return _default_conversion(module, path, arch, support, rebuilt)

    all_hooks = [*hooks, default]

    def visit(parent: nn.Module, prefix: str, ancestors: tuple[int, ...]) -> None:
        for name, child in list(parent._modules.items()):
            if child is None:
                continue
            path = f"{prefix}.{name}" if prefix else name
            if id(child) in done:
                replacement = done[id(child)]
                if id(replacement) not in ancestors:  # a module shared by two paths: one supernet module
                    parent._modules[name] = replacement
                    continue  # (else: the replacement wraps the original, which stays as it is inside)
                new = child
            else:
                new = _run_hooks(all_hooks, child, path, memo, mutate_kwargs) or child
                done[id(child)] = new
                parent._modules[name] = new
                _refuse_dangling(new, path, support)
            visit(new, path, (*ancestors, id(new)))

    visit(space, "", ())
    after = dedup_labeled_mutables(module_leaf_mutables(space))
    if set(after) != set(arch.mutables) or any(not after[k].equals(arch.mutables[k]) for k in after):
        lost = sorted(set(arch.mutables) - set(after))
        raise RuntimeError(f"Building the supernet changed the space's choices (lost: {lost}); a mutation hook must "
                           "keep the mutables of the module it replaces (add_mutable).")
    return space
