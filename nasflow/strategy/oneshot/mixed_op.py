"""``MixedOperation``: a ``Mutable*`` layer (``MutableLinear(64, width)``) in a supernet, weights shared.

The supernet keeps one set of the *largest* tensors the layer's choices can need. A sample's layer
uses a slice of them: the leading ``n`` entries of every dimension, except a convolution kernel's
spatial dimensions, which take the centre (a 3x3 kernel is the middle of the 5x5 one). The sampled
forward pass runs the torch layer's own ``forward`` on those slices (``torch.func.functional_call``
on a weightless template built on the ``meta`` device), and freezing copies the same slices into a
plain torch layer, so a sampled path and the frozen model compute the same thing, bit for bit.

Relaxed (DARTS), the layer mixes every combination of its choices: each runs on the leading part of
its input (``in_features`` of a wider mixture), outputs are zero-padded along the feature dimension
to the widest, and weighted by the combination's probability.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from nasflow.mutable import LabeledMutable, Sample, dedup_labeled_mutables
from nasflow.nn.parametrized import ParametrizedModule, freeze_arguments

from .architecture import Architecture, UnsupportedChoiceError
from .mixed import SupernetModule

__all__ = ["MixedOperation"]

# Layers whose tensors are shared by slicing (their layout is "a prefix is a smaller layer").
_SLICEABLE: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.Embedding,
)


def _meta(cls: type[nn.Module], args: tuple[Any, ...], kwargs: dict[str, Any]) -> nn.Module:
    with torch.device("meta"):
        return cls(*args, **kwargs)


def _tensor_shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in [*module.named_parameters(), *module.named_buffers()]}


def _slice(full: Tensor, shape: tuple[int, ...], spatial_from: int | None) -> Tensor:
    index = []
    for dim, (n, total) in enumerate(zip(shape, full.shape, strict=True)):
        if n == total:
            index.append(slice(None))
        elif spatial_from is not None and dim >= spatial_from:
            start = (total - n) // 2
            index.append(slice(start, start + n))
        else:
            index.append(slice(0, n))
    return full[tuple(index)]


def _feature_dims(template: nn.Module) -> list[tuple[int, int]]:
    """``(dim, size)`` of the input a layer reads features from (its output varies along the same dims)."""
    if isinstance(template, nn.Linear):
        return [(-1, template.in_features)]
    if isinstance(template, nn.modules.conv._ConvNd):
        return [(1, template.in_channels)]
    if isinstance(template, nn.modules.batchnorm._BatchNorm):
        return [(1, template.num_features)]
    if isinstance(template, nn.GroupNorm):
        return [(1, template.num_channels)]
    if isinstance(template, nn.LayerNorm):
        shape = tuple(template.normalized_shape)
        return [(i - len(shape), n) for i, n in enumerate(shape)]
    return []


class MixedOperation(SupernetModule):
    """A ``Mutable*`` layer with choices in its arguments, sharing the largest weights (module docstring)."""

    def __init__(self, module: ParametrizedModule, arch: Architecture, path: str) -> None:
        super().__init__(arch)
        wraps = type(module)._wraps
        assert wraps is not None
        self.wraps, self.path = wraps, path
        self.trace_args, self.trace_kwargs = module.trace_args, module.trace_kwargs
        for mutable in module.mutables:
            self.add_mutable(mutable)
        self.leaves: list[LabeledMutable] = list(dedup_labeled_mutables(
            leaf for m in module.mutables for leaf in m.leaf_mutables()).values())
        self._templates: dict[tuple[Any, ...], nn.Module] = {}
        self._finite = all(leaf.is_finite() for leaf in self.leaves)
        largest = self._largest_combination()
        full = self._build(largest, real=True)
        reference = next(iter([*module.parameters(), *module.buffers()]), None)
        if reference is not None:
            full = full.to(reference.device, reference.dtype if reference.is_floating_point() else None)
        self._adopt(full)
        self._spatial = 2 if isinstance(full, nn.modules.conv._ConvNd) else None
        dims = [dim for dim, _ in _feature_dims(full)]
        self._output_dims = [-1] if isinstance(full, nn.Embedding) else dims
        with torch.no_grad():  # the space's own tensors (its default choices) seed their slice
            for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
                _slice(self._full(name), tuple(tensor.shape), self._spatial_for(name)).copy_(tensor)
        self.train(module.training)

    # ---- construction ----------------------------------------------------------------------------
    def _where(self) -> str:
        labels = ", ".join(repr(leaf.label) for leaf in self.leaves)
        return f"{self.wraps.__name__} at {self.path!r} (choices {labels})"

    def _combos(self) -> list[Sample]:
        grids = [list(leaf.grid(granularity=2)) if not leaf.is_finite() else list(leaf.grid())  # type: ignore[call-arg]
                 for leaf in self.leaves]
        return [dict(zip((leaf.label for leaf in self.leaves), values, strict=True))
                for values in itertools.product(*grids)]

    def _largest_combination(self) -> Sample:
        combos = self._combos()
        shapes = [_tensor_shapes(self._template(combo)) for combo in combos]
        names = set().union(*shapes)
        if shapes and any(shape for shape in shapes) and not issubclass(self.wraps, _SLICEABLE):
            raise UnsupportedChoiceError(f"{self._where()}: nasflow cannot share the weights of "
                                         f"{self.wraps.__name__} between choices. Search it with a LayerChoice of "
                                         "fixed layers instead.")
        largest: dict[str, tuple[int, ...]] = {}
        for name in names:
            ranks = {len(s[name]) for s in shapes if name in s}
            if len(ranks) > 1:
                raise UnsupportedChoiceError(f"{self._where()}: the rank of {name!r} changes between choices; one "
                                             "tensor cannot hold them all. Search it with a LayerChoice instead.")
            largest[name] = tuple(max(dims) for dims in zip(*(s[name] for s in shapes if name in s), strict=True))
        infinite = [leaf.label for leaf in self.leaves if not leaf.is_finite()]
        if infinite and any(shape != shapes[0] for shape in shapes):
            raise UnsupportedChoiceError(f"{self._where()}: the continuous choice {infinite[0]!r} changes tensor "
                                         "shapes, so no largest weight exists. Make it a categorical choice "
                                         "(nasflow.choice).")
        for combo, shape in zip(combos, shapes, strict=True):
            if shape == largest:
                return combo
        raise UnsupportedChoiceError(f"{self._where()}: no single choice needs the largest of every tensor "
                                     f"({largest}), so the choices cannot share one set of weights. Search it with a "
                                     "LayerChoice instead.")

    def _build(self, combo: Sample, real: bool = False) -> nn.Module:
        args, kwargs = freeze_arguments(self.trace_args, self.trace_kwargs, combo)
        return self.wraps(*args, **kwargs) if real else _meta(self.wraps, args, kwargs)

    def _adopt(self, full: nn.Module) -> None:
        """Take ``full``'s tensors and submodules under their own names (the space's state-dict keys)."""
        for name, param in full.named_parameters(recurse=False):
            self.register_parameter(name, param)
        for name, buffer in full.named_buffers(recurse=False):
            self.register_buffer(name, buffer, persistent=name not in full._non_persistent_buffers_set)
        for name, child in full.named_children():
            self.add_module(name, child)

    def _template(self, combo: Sample) -> nn.Module:
        """The weightless layer of ``combo``, in this module's train/eval mode."""
        key = tuple(repr(combo[leaf.label]) for leaf in self.leaves)
        template = self._templates.get(key)
        if template is None:
            template = self._build(combo)
            if self._finite:  # a continuous choice takes new values every step: not worth keeping
                self._templates[key] = template
        if template.training != self.training:
            template.train(self.training)
        return template

    def _full(self, name: str) -> Tensor:
        owner, _, leaf = name.rpartition(".")
        module = self.get_submodule(owner) if owner else self
        return getattr(module, leaf)

    def _spatial_for(self, name: str) -> int | None:
        return self._spatial if name.rpartition(".")[2] == "weight" else None

    def _tensors(self, template: nn.Module) -> dict[str, Tensor]:
        """The slices of the shared tensors that ``template``'s layer uses (buffers as views, so running
        statistics update in place)."""
        out = {name: _slice(self._full(name), tuple(t.shape), self._spatial_for(name)).contiguous()
               for name, t in template.named_parameters()}
        for name, t in template.named_buffers():
            out[name] = _slice(self._full(name), tuple(t.shape), None)
        return out

    # ---- computing ---------------------------------------------------------------------------------
    def _combo_now(self) -> Sample:
        return {leaf.label: self.arch.value(leaf) for leaf in self.leaves}

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.arch.sampled:
            template = self._template(self._combo_now())
            return functional_call(template, self._tensors(template), args, kwargs)
        outputs, weights = [], []
        for combo, weight in self.arch.combinations(self.leaves):
            template = self._template(combo)
            x = args[0]
            for dim, size in _feature_dims(template):
                if x.shape[dim] < size:
                    raise ValueError(f"{self._where()}: the input has {x.shape[dim]} features in dimension {dim}, "
                                     f"fewer than the {size} this choice reads.")
                x = x.narrow(dim, 0, size)
            outputs.append(functional_call(template, self._tensors(template), (x, *args[1:]), kwargs))
            weights.append(weight)
        return sum(w * o for w, o in zip(weights, self._pad(outputs), strict=True))

    def _pad(self, outputs: list[Tensor]) -> list[Tensor]:
        """Zero-pad outputs to the widest along the feature dimensions; any other difference is an error."""
        dims = {d % outputs[0].dim() for d in self._output_dims}
        target = [max(o.shape[d] for o in outputs) for d in range(outputs[0].dim())]
        padded = []
        for out in outputs:
            if any(out.shape[d] != target[d] for d in range(out.dim()) if d not in dims):
                raise ValueError(f"{self._where()}: choices give outputs of shapes "
                                 f"{sorted({tuple(o.shape) for o in outputs})}, which differ outside the feature "
                                 "dimension, so a relaxed supernet cannot mix them. Use RandomOneShot or ENAS.")
            pad: list[int] = []
            for d in reversed(range(out.dim())):
                pad += [0, target[d] - out.shape[d]]
            padded.append(F.pad(out, pad) if any(pad) else out)
        return padded

    def freeze_shallow(self, sample: Sample) -> nn.Module:
        """The plain torch layer of ``sample``, holding copies of its slices of the shared tensors."""
        combo = {leaf.label: leaf.freeze(sample) for leaf in self.leaves}
        frozen = self._build(combo)
        for name, tensor in self._tensors(self._template(combo)).items():
            owner, _, leaf = name.rpartition(".")
            module = frozen.get_submodule(owner) if owner else frozen
            copy = tensor.detach().clone()
            if leaf in module._parameters:
                module._parameters[leaf] = nn.Parameter(copy, requires_grad=self._full(name).requires_grad)
            else:
                module._buffers[leaf] = copy
        return frozen.train(self.training)

    def extra_repr(self) -> str:
        return f"{self.wraps.__name__}, choices={[leaf.label for leaf in self.leaves]}"
