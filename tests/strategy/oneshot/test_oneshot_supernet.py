"""The supernet on its own (no training loop): exact weight sharing, relaxations, gates, refusals."""

from __future__ import annotations

import copy
import io
import random
from typing import Any

import pytest
import torch
from oneshot_support import ConvSpace, MlpSpace
from torch import nn

import nasflow
from nasflow.mutable import ExpressionConstraint, ensure_frozen
from nasflow.nn import (
    Cell,
    InputChoice,
    LayerChoice,
    ModelSpace,
    MutableLinear,
    MutableModule,
    MutableMultiheadAttention,
    ParametrizedModule,
)
from nasflow.strategy import DARTS, ENAS, GumbelDARTS, Proxyless, RandomOneShot
from nasflow.strategy.oneshot import (
    Architecture,
    CostTable,
    ExpectationProfilerPenalty,
    MixedOperation,
    RangeProfilerFilter,
    SupernetModule,
    UnsupportedChoiceError,
    build_supernet,
    is_supernet,
)
from nasflow.strategy.oneshot.differentiable import unrolled_gradients
from nasflow.strategy.oneshot.supernet import Support

SAMPLING = Support("test", constraints=True, continuous=True, any_number_of_inputs=True)
RELAXED = Support("test", relaxed=True)


def supernet_of(space: nn.Module, support: Support = SAMPLING) -> tuple[nn.Module, Architecture]:
    arch = Architecture(space.simplify())
    arch.use({label: m.default() for label, m in arch.mutables.items()})
    return build_supernet(space, arch, support), arch


def relax(arch: Architecture, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    arch.logits = {label: torch.randn(len(m.values), generator=generator).requires_grad_()
                   for label, m in arch.mutables.items()}
    arch.use(None)


def images(n: int = 6) -> torch.Tensor:
    return torch.rand(n, 64, generator=torch.Generator().manual_seed(1))


def test_supernet_keeps_the_space_labels_and_its_default_model() -> None:
    torch.manual_seed(0)
    space = ConvSpace().eval()
    before = space.simplify()
    expected = space(images())
    state_keys = set(space.state_dict())
    supernet, _ = supernet_of(space)
    assert supernet is space and is_supernet(space)
    after = supernet.simplify()
    assert list(after) == list(before) and all(after[k] is before[k] for k in before)
    assert torch.equal(supernet(images()), expected)  # the space's own weights seed the default path
    assert set(supernet.state_dict()) == state_keys  # same names, larger tensors
    assert supernet.conv.weight.shape == (8, 1, 5, 5)


@pytest.mark.parametrize("merge_op", ["all", "loose_end"])
def test_sampled_path_equals_the_frozen_model_with_inherited_weights(merge_op: str) -> None:
    torch.manual_seed(0)
    supernet, arch = supernet_of(ConvSpace(merge_op))
    rng = random.Random(0)
    supernet.train()
    with torch.no_grad():  # move every weight and BatchNorm statistic away from its initial value
        for p in supernet.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        for _ in range(8):
            arch.use(arch.uniform(rng))
            supernet(images(16))
    seen = set()
    for _ in range(12):
        sample = arch.uniform(rng)
        seen.add(repr(sample))
        frozen = supernet.freeze(sample)
        assert not is_supernet(frozen) and frozen.simplify() == {}
        for mode in ("eval", "train"):
            getattr(supernet, mode)()
            getattr(frozen, mode)()
            arch.use(sample)
            with torch.no_grad():
                assert torch.equal(supernet(images()), frozen(images())), (sample, mode)
    assert len(seen) > 6


def test_frozen_model_is_an_independent_plain_module_that_retrains() -> None:
    torch.manual_seed(0)
    supernet, arch = supernet_of(ConvSpace())
    sample = {**arch.sample, "channels": 4, "kernel": 3, "depth": 2}  # type: ignore[dict-item]
    frozen = supernet.freeze(sample)
    assert type(frozen.conv) is nn.Conv2d and frozen.conv.weight.shape == (4, 1, 3, 3)
    assert torch.equal(frozen.conv.weight, supernet.conv.weight[:4, :, 1:4, 1:4])  # the kernel's centre
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    optimizer = torch.optim.SGD(frozen.parameters(), lr=0.1)
    frozen.train()
    for _ in range(3):
        optimizer.zero_grad()
        nn.functional.cross_entropy(frozen(images(8)), torch.arange(8) % 10).backward()
        optimizer.step()
    assert all(torch.equal(before[k], v) for k, v in supernet.state_dict().items())  # copies, not views
    buffer = io.BytesIO()
    torch.save(frozen.state_dict(), buffer)
    assert copy.deepcopy(frozen)(images()).shape == (6, 10)


def test_relaxed_supernet_is_the_weighted_mixture_and_reaches_every_logit() -> None:
    torch.manual_seed(0)
    space = MlpSpace()
    supernet, arch = supernet_of(space, RELAXED)
    relax(arch)
    x = images()
    # a LayerChoice: sum of p_i * candidate_i
    h = torch.randn(6, 32)
    act = supernet.act
    probs = torch.softmax(arch.logits["act"], -1)
    expected = sum(p * act.candidate(v)(h) for p, v in zip(probs, act.choice.values, strict=True))
    assert torch.allclose(act(h), expected)
    # a Mutable* layer: each width's slice, zero-padded to the widest, weighted
    stem = supernet.stem
    p8, p32 = torch.softmax(arch.logits["width"], -1)
    narrow = nn.functional.pad(nn.functional.linear(x, stem.weight[:8], stem.bias[:8]), [0, 24])
    wide = nn.functional.linear(x, stem.weight, stem.bias)
    assert torch.allclose(stem(x), p8 * narrow + p32 * wide)
    supernet(x).sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in arch.logits.values())


def test_gumbel_weights_draw_once_per_label_and_step() -> None:
    space = MlpSpace()
    supernet, arch = supernet_of(space, RELAXED)
    relax(arch)
    calls: list[str] = []
    arch.weight_fn = lambda logits: calls.append("draw") or torch.softmax(logits, -1)
    supernet(images())
    assert len(calls) == len(arch.mutables)  # 'width' is read by three layers, drawn once
    arch.refresh()
    supernet(images())
    assert len(calls) == 2 * len(arch.mutables)


def test_binary_gates_give_proxylessnas_gradient() -> None:
    torch.manual_seed(0)
    space = MlpSpace()
    supernet, arch = supernet_of(space, Support("test", gated=True))
    relax(arch)
    layer = supernet.act
    h = torch.randn(5, 32)
    target = torch.randn(5, 32)
    arch.use({**{k: m.default() for k, m in arch.mutables.items()}, "act": "sigmoid"}, gates=True)
    out = layer(h)
    assert torch.equal(out, torch.sigmoid(h))  # the forward pass is the sampled path alone
    ((out - target) ** 2).sum().backward()
    grad_out = 2 * (out.detach() - target)
    outputs = [layer.candidate(v)(h) for v in layer.choice.values]
    gates = torch.stack([(grad_out * o).sum() for o in outputs])
    p = torch.softmax(arch.logits["act"].detach(), -1)
    expected = torch.stack([sum(gates[j] * p[j] * (float(i == j) - p[i]) for j in range(3)) for i in range(3)])
    assert torch.allclose(arch.logits["act"].grad, expected, atol=1e-5)


def test_a_label_shared_by_two_layers_is_one_decision() -> None:
    class Twice(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.a = LayerChoice([nn.ReLU(), nn.Tanh()], label="act")
            self.b = LayerChoice([nn.ReLU(), nn.Tanh()], label="act")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(x))

    supernet, arch = supernet_of(Twice())
    assert list(arch.mutables) == ["act"]
    arch.use({"act": 1})
    x = torch.randn(3, 4)
    assert torch.equal(supernet(x), torch.tanh(torch.tanh(x)))
    frozen = supernet.freeze({"act": 1})
    assert isinstance(frozen.a, nn.Tanh) and isinstance(frozen.b, nn.Tanh)


class Custom(MutableModule):
    def __init__(self) -> None:
        super().__init__()
        self.scale = self.add_mutable(nasflow.choice("scale", [1, 2]))


class Block(ParametrizedModule):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(4, width)


def _space(build: Any) -> ModelSpace:
    class Space(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            build(self)

    return Space()


def _numerical(self: ModelSpace) -> None:
    self.fc = MutableLinear(4, 4)
    self.drop = nasflow.nn.MutableDropout(nasflow.uniform("p", 0.0, 0.5))


def _any_inputs(self: ModelSpace) -> None:
    self.inputs = InputChoice(3, None, label="any")


def _concat(self: ModelSpace) -> None:
    self.inputs = InputChoice(3, 2, reduction="concat", label="two")


def _loose_end(self: ModelSpace) -> None:
    self.cell = Cell([lambda: nn.ReLU()], num_nodes=2, merge_op="loose_end", label="loose")


def _constraint(self: ModelSpace) -> None:
    width = nasflow.choice("width", [4, 8])
    self.fc = MutableLinear(4, width)
    self.add_mutable(ExpressionConstraint(width <= 4, label="small"))


def _width(self: ModelSpace) -> None:
    self.fc = MutableLinear(4, nasflow.choice("width", [4, 8]))


def _two_inputs(self: ModelSpace) -> None:
    self.inputs = InputChoice(3, 2, label="pair")


def _custom(self: ModelSpace) -> None:
    self.custom = Custom()


def _python_choice(self: ModelSpace) -> None:
    self.fc = nn.Linear(4, ensure_frozen(nasflow.choice("hidden", [4, 8])))


def _basic_unit(self: ModelSpace) -> None:
    self.block = Block(nasflow.choice("unit", [4, 8]))


def _no_largest(self: ModelSpace) -> None:
    width = nasflow.choice("swap", [4, 8])
    self.fc = MutableLinear(width, 12 - width)


def _attention(self: ModelSpace) -> None:
    self.attn = MutableMultiheadAttention(nasflow.choice("embed", [4, 8]), 2)


@pytest.mark.parametrize(("strategy", "build", "named"), [
    (DARTS, _numerical, "'p'"),
    (DARTS, _any_inputs, "'any'"),
    (GumbelDARTS, _concat, "'two'"),
    (DARTS, _loose_end, "'loose'"),
    (DARTS, _constraint, "'small'"),
    (ENAS, _constraint, "'small'"),
    (Proxyless, _width, "'width'"),
    (Proxyless, _two_inputs, "'pair'"),
    (ENAS, _two_inputs, "'pair'"),
    (RandomOneShot, _custom, "'scale'"),
    (DARTS, _python_choice, "'hidden'"),
    (RandomOneShot, _basic_unit, "'unit'"),
    (RandomOneShot, _no_largest, "'swap'"),
    (DARTS, _attention, "'embed'"),
])
def test_a_choice_the_strategy_cannot_search_is_refused_by_label(strategy: type, build: Any, named: str) -> None:
    with pytest.raises(UnsupportedChoiceError, match=named):
        strategy().mutate_model(_space(build))


def test_random_one_shot_accepts_what_only_sampling_can_search() -> None:
    for build in (_numerical, _any_inputs, _constraint, _loose_end):
        space = _space(build)
        assert is_supernet(RandomOneShot().mutate_model(space))


def test_mutation_hooks_replace_modules_first() -> None:
    class Doubled(SupernetModule):
        def __init__(self, choice: LayerChoice, arch: Architecture) -> None:
            super().__init__(arch)
            self.inner = choice
            self.add_mutable(choice.choice)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * self.inner[self.arch.value(self.inner.choice)](x)

    def hook(module: nn.Module, path: str, memo: dict, kwargs: dict) -> Any:
        return Doubled(module, kwargs["arch"]) if isinstance(module, LayerChoice) else None

    space = MlpSpace()
    strategy = RandomOneShot(mutation_hooks=[hook])
    strategy.mutate_model(space)
    assert isinstance(space.act, Doubled) and isinstance(space.stem, MixedOperation)


def test_cost_table_profiles_samples_and_expectations() -> None:
    space = MlpSpace()
    table = CostTable({"width": {8: 1.0, 32: 4.0}, "act": [0.5, 0.7, 0.0]}, base=2.0).bind(space.simplify())
    assert table.profile({"width": 32, "act": "sigmoid", "depth": 1, "skip": 0}) == 2.0 + 4.0 + 0.7
    probs = {"width": {8: torch.tensor(0.25), 32: torch.tensor(0.75)},
             "act": {"relu": torch.tensor(0.5), "sigmoid": torch.tensor(0.5), "zero": torch.tensor(0.0)}}
    assert float(table.expectation(probs)) == pytest.approx(2.0 + 0.25 + 3.0 + 0.6)
    penalty = ExpectationProfilerPenalty(table, baseline=4.0, scale=2.0, nonlinear="positive")
    loss, details = penalty(torch.tensor(1.0), probs)
    assert float(loss) == pytest.approx(1.0 + 2.0 * (5.85 / 4.0 - 1))
    mul = ExpectationProfilerPenalty(table, baseline=5.85, scale=0.5, aggregate="mul")
    assert float(mul(torch.tensor(3.0), probs)[0]) == pytest.approx(3.0)
    keep = RangeProfilerFilter(table, max=5.0)
    assert keep({"width": 8, "act": "relu", "depth": 1, "skip": 0}) and not keep({"width": 32, "act": "relu"})
    with pytest.raises(UnsupportedChoiceError, match="'blocks'"):
        CostTable({"blocks": [1.0]}).bind(space.simplify())
    with pytest.raises(UnsupportedChoiceError, match="'width'.*16"):
        CostTable({"width": {8: 1.0, 32: 2.0, 16: 3.0}}).bind(space.simplify())


def test_second_order_gradient_matches_the_exact_hypergradient() -> None:
    torch.manual_seed(0)
    w = torch.randn(5, requires_grad=True)
    a = torch.randn(3, requires_grad=True)
    basis = torch.randn(3, 5)
    xt, xv = torch.randn(5), torch.randn(5)

    def loss(weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return ((torch.softmax(a, 0) @ basis) * weights * x).sum() ** 2 + (weights ** 2).sum()

    xi = 0.05
    got = unrolled_gradients(lambda: loss(w, xt), lambda: loss(w, xv), [w], [a], xi)[0]
    virtual = w - xi * torch.autograd.grad(loss(w, xt), w, create_graph=True)[0]
    exact = torch.autograd.grad(loss(virtual, xv), a)[0]
    first_order = torch.autograd.grad(loss(w, xv), a)[0]
    assert torch.allclose(got, exact, rtol=1e-2, atol=1e-4)
    assert not torch.allclose(first_order, exact, rtol=1e-2, atol=1e-4)  # the correction matters here
    assert torch.equal(w, w.detach())  # weights restored


def _reducing_op(name: str) -> Any:
    """NNI's DARTS reduction-cell factory: stride 2 only on the cell's own inputs."""
    def make(node_index: int, op_index: int, input_index: int | None = None) -> nn.Module:
        stride = 2 if input_index is None or input_index < 2 else 1
        if name == "conv":
            return nn.Sequential(nn.Conv2d(4, 4, 3, stride, 1), nn.BatchNorm2d(4))
        return nn.AvgPool2d(3, stride, 1)

    return make


@pytest.mark.parametrize("merge_op", ["all", "loose_end"])
def test_cell_of_input_dependent_operations_shares_weights_per_edge(merge_op: str) -> None:
    class Reduction(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.cell = Cell({"conv": _reducing_op("conv"), "pool": _reducing_op("pool")}, num_nodes=3,
                             num_ops_per_node=2, num_predecessors=2, merge_op=merge_op, label="reduce")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.cell([x, x])

    torch.manual_seed(0)
    space = Reduction()
    if getattr(space.cell, "op_candidates_factory", None) is None:
        pytest.skip("this Cell calls operation factories without the input index")
    supernet, arch = supernet_of(space)
    x = torch.randn(2, 4, 8, 8)
    rng = random.Random(0)
    for _ in range(8):
        sample = arch.uniform(rng)
        arch.use(sample)
        frozen = supernet.eval().freeze(sample).eval()
        assert torch.equal(supernet(x), frozen(x)), sample
    if merge_op == "all":
        relax(arch)
        supernet(x).sum().backward()
        assert all(t.grad is not None for t in arch.logits.values())
    with pytest.raises(UnsupportedChoiceError, match="'reduce'"):
        Proxyless().mutate_model(Reduction())


def test_expected_cost_penalty_pushes_the_logits_toward_cheap_choices() -> None:
    space = MlpSpace()
    arch = Architecture(space.simplify())
    relax(arch)
    table = CostTable({"act": {"relu": 1.0, "sigmoid": 5.0, "zero": 0.0}}).bind(arch.mutables)
    penalty = ExpectationProfilerPenalty(table, baseline=1.0)
    loss, _ = penalty(torch.tensor(0.0), arch.probabilities())
    loss.backward()
    grad = arch.logits["act"].grad
    assert grad[1] > 0 > grad[2]  # descending the penalty makes 'sigmoid' less and 'zero' more likely


def test_uniform_sampling_respects_constraints_and_filters() -> None:
    space = _space(_constraint)
    arch = Architecture(space.simplify())
    rng = random.Random(0)
    assert all(arch.uniform(rng)["width"] == 4 for _ in range(20))  # the constraint 'small': width <= 4
    mlp = Architecture(MlpSpace().simplify())
    assert all(s["act"] != "zero" for s in (mlp.uniform(rng, lambda s: s["act"] != "zero") for _ in range(20)))
