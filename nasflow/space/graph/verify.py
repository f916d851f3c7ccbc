"""What ``dummy_input`` buys at conversion: shape checks, and a numerical check of the conversion.

``check_candidate_shapes`` runs the space and every LayerChoice candidate on the dummy input (which
also materializes lazy modules) and refuses candidates that disagree on output shape.

``verify_conversion`` then checks that the graph format computes what the user's code computes: for
the default sample and a few random ones, the model built from the IR and the simplified format's
model of the same sample (the space's constructor run under that sample), given the same weights,
must agree on the dummy input, module by module. The first module whose input or output differs
is named in the refusal. It costs two model builds and two forward passes per sample.
"""

from __future__ import annotations

import copy
import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from nasflow.nn import LayerChoice, ModelSpace
from nasflow.nn.base import freeze_module

from .errors import GraphConversionError
from .space import GraphModelSpace
from .weights import load_weights_from, weight_name_mapping

__all__ = ["check_candidate_shapes", "verify_conversion", "RANDOM_SAMPLES"]

_logger = logging.getLogger(__name__)

RANDOM_SAMPLES = 3


def _inputs(dummy_input: Any) -> tuple[Any, ...]:
    return dummy_input if isinstance(dummy_input, tuple) else (dummy_input,)


def _clone(value: Any) -> Any:
    """A copy of the inputs for each run (a model may update its inputs in place)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (list, tuple)):
        return type(value)(_clone(v) for v in value) if not hasattr(value, "_fields") else value
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    return value


@contextmanager
def _evaluating(module: nn.Module) -> Iterator[None]:
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, mode in modes.items():
            m.training = mode


def check_candidate_shapes(space: nn.Module, dummy_input: Any) -> None:
    """Run ``dummy_input`` through the space and every LayerChoice candidate; shapes must agree."""
    captured: dict[int, tuple[LayerChoice, tuple[Any, ...], dict[str, Any]]] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, a, kw: captured.setdefault(id(mod), (mod, a, kw)) and None,
                                         with_kwargs=True)
             for m in space.modules() if isinstance(m, LayerChoice)]
    try:
        with _evaluating(space):
            space(*_clone(_inputs(dummy_input)))
            done: set[int] = set()
            while len(done) < len(captured):
                for key, (choice, args, kwargs) in list(captured.items()):
                    if key in done:
                        continue
                    done.add(key)
                    shapes = {name: _shapes(choice[name](*_clone(args), **_clone(kwargs))) for name in choice.names}
                    if len(set(map(repr, shapes.values()))) > 1:
                        raise GraphConversionError(
                            f"LayerChoice {choice.label!r}: candidates disagree on output shape for the dummy input: "
                            + ", ".join(f"{k!r} -> {v}" for k, v in shapes.items())
                            + ". Every candidate must produce the same shape."
                        )
    except GraphConversionError:
        raise
    except Exception as err:
        raise GraphConversionError(f"dummy_input does not run through the space: {type(err).__name__}: {err}") from err
    finally:
        for hook in hooks:
            hook.remove()


def _shapes(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (list, tuple)):
        return [_shapes(v) for v in value]
    if isinstance(value, dict):
        return {k: _shapes(v) for k, v in value.items()}
    return type(value).__name__


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value.detach().clone()]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for k in value for t in _tensors(value[k])]
    return [torch.tensor(value)] if isinstance(value, (int, float, bool)) else []


def _differ(a: list[torch.Tensor], b: list[torch.Tensor]) -> str | None:
    """Why two lists of tensors differ (None when they agree to float rounding)."""
    if len(a) != len(b):
        return f"{len(a)} tensors against {len(b)}"
    for x, y in zip(a, b, strict=True):
        if x.shape != y.shape or x.dtype != y.dtype:
            return f"{tuple(x.shape)} {x.dtype} against {tuple(y.shape)} {y.dtype}"
        if x.dtype.is_floating_point or x.dtype.is_complex:
            if not torch.equal(x.isnan(), y.isnan()):
                return "NaNs at other places"
            x, y = x.nan_to_num(), y.nan_to_num()
            gap = (x - y).abs()
            if bool((gap > 1e-5 * (1 + x.abs())).any()):
                return f"largest difference {gap.max().item():.3g}"
        elif not torch.equal(x, y):
            return "other values"
    return None


def _run(module: nn.Module, inputs: tuple[Any, ...], names: set[str] | None) -> tuple[Any, list[tuple[str, Any]]]:
    """``module(*inputs)`` in eval mode with a fixed seed; and (path, inputs, outputs) per module call."""
    calls: list[tuple[str, Any]] = []
    hooks = []
    for path, sub in module.named_modules():
        if path and (names is None or path in names):
            hooks.append(sub.register_forward_hook(
                lambda m, a, kw, out, path=path: calls.append((path, (_tensors((a, kw)), _tensors(out)))),
                with_kwargs=True))
    try:
        with _evaluating(module), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            output = module(*_clone(inputs))
    finally:
        for hook in hooks:
            hook.remove()
    return output, calls


def _reference(space: nn.Module, sample: dict[str, Any]) -> nn.Module:
    """The simplified format's model of ``sample``: the constructor run again under it."""
    if isinstance(space, ModelSpace) and "_nf_init_args" in space.__dict__:
        return space.rebuild(sample)
    return copy.deepcopy(freeze_module(space, sample))


def _samples(model: GraphModelSpace) -> list[dict[str, Any]]:
    default: dict[str, Any] = {}
    model.default(default)
    samples, rng = [default], random.Random(0)
    for _ in range(RANDOM_SAMPLES * 3):
        if len(samples) > RANDOM_SAMPLES:
            break
        sample: dict[str, Any] = {}
        model.random(sample, rng)
        if sample not in samples:
            samples.append(sample)
    return samples


def verify_conversion(space: nn.Module, model: GraphModelSpace, dummy_input: Any) -> None:
    """Refuse ``model`` unless, for a few samples, it computes what the space's own models compute."""
    inputs = _inputs(dummy_input)
    for index, sample in enumerate(_samples(model)):
        try:
            reference = _reference(space, sample)
            expected = _run(reference, inputs, None)  # (this also materializes lazy modules)
        except Exception as err:  # noqa: BLE001 - the user's own model fails: not the conversion's fault
            if index == 0:
                raise GraphConversionError(f"dummy_input does not run through the space's model for the default "
                                           f"sample {sample}: {type(err).__name__}: {err}") from err
            _logger.warning("Skipping the check of sample %s: the space's own model fails on dummy_input (%s: %s).",
                            sample, type(err).__name__, err)
            continue
        _compare(reference, expected, model.freeze(sample), inputs, sample)


def _compare(reference: nn.Module, expected_run: tuple[Any, list[tuple[str, Any]]], frozen: GraphModelSpace,
             inputs: tuple[Any, ...], sample: dict[str, Any]) -> None:
    """The generated model of ``frozen``, given ``reference``'s weights, against ``reference``'s run."""
    what = f"Self-verification of the graph conversion failed for sample {sample}"
    try:
        generated = frozen.executable_model()
        report = load_weights_from(reference, generated, frozen, source_kind="frozen")
    except (KeyError, RuntimeError) as err:
        raise GraphConversionError(f"{what}: the generated model's tensors do not match the space's model's: "
                                   f"{err}. {_advice('')}") from err
    if report.skipped:
        raise GraphConversionError(f"{what}: the generated model's tensors {report.skipped[:5]} have other shapes "
                                   f"than in the space's model. {_advice('')}")
    mapping = weight_name_mapping(frozen)
    to_reference = {gen: paths[1] for gen, paths in {**mapping.graphs, **mapping.modules}.items()}
    expected, reference_calls = expected_run
    try:
        got, generated_calls = _run(generated, inputs, set(to_reference))
    except Exception as err:  # noqa: BLE001 - the space's model ran; the generated one must too
        raise GraphConversionError(f"{what}: the generated model fails on dummy_input ({type(err).__name__}: "
                                   f"{err}). {_advice('')}") from err
    by_path: dict[str, list[Any]] = {}
    for path, io in generated_calls:
        by_path.setdefault(to_reference[path], []).append(io)
    modules = dict(reference.named_modules())
    for path, (ref_in, ref_out) in reference_calls:
        if not by_path.get(path):
            continue
        gen_in, gen_out = by_path[path].pop(0)
        parent = path.rpartition(".")[0]
        problem = _differ(ref_in, gen_in)
        if problem is not None:
            raise GraphConversionError(
                f"{what}: the input of module '{path}' differs ({problem}), so the code of "
                f"{_name(parent, modules)} that computes it is converted wrongly. {_advice(parent)}")
        problem = _differ(ref_out, gen_out)
        if problem is not None:
            raise GraphConversionError(f"{what}: the output of {_name(path, modules)} differs ({problem}). "
                                       f"{_advice(path)}")
    problem = _differ(_tensors(expected), _tensors(got))
    if problem is not None:
        raise GraphConversionError(f"{what}: the output of the space's own forward() differs ({problem}). "
                                   f"{_advice('')}")


def _name(path: str, modules: dict[str, nn.Module]) -> str:
    return f"module '{path}' ({type(modules[path]).__qualname__})" if path else "the space's own forward()"


def _advice(path: str) -> str:
    target = f"make module '{path}' a basic unit (subclass nasflow.nn.ParametrizedModule, or set " \
             "`_nni_basic_unit = True` on its class)" if path else "use the simplified model format"
    return (f"To work around it, {target}; and please report this conversion problem to nasflow with the module's "
            "code.")
