"""Leaf mutables: Categorical, CategoricalMultiple, Numerical and the ``nasflow.choice`` shortcuts.

Each primitive is checked on every part of the Mutable protocol (freeze, contains, validate,
default, random, grid, leaf_mutables, simplify), with concrete values, and the distributions of
Numerical are checked statistically with a seeded RNG.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter

import pytest

import nasflow
from nasflow.mutable import (
    Categorical,
    CategoricalMultiple,
    Numerical,
    SampleMissingError,
    SampleValidationError,
)

# ---- Categorical -----------------------------------------------------------------------------


def test_categorical_protocol() -> None:
    c = Categorical([3, 5, 7], label="k")
    assert c.freeze({"k": 5}) == 5
    assert c.contains({"k": 7}) and not c.contains({"k": 4}) and not c.contains({})
    c.validate({"k": 3})
    assert c.default() == 3
    assert Categorical([3, 5, 7], default=7, label="k2").default() == 7
    assert list(c.grid()) == [3, 5, 7]
    assert list(c.leaf_mutables()) == [c]
    assert c.simplify() == {"k": c}
    assert c.is_finite() and len(c) == 3


def test_categorical_memo_is_filled_and_respected() -> None:
    c = Categorical(["a", "b"], label="x")
    memo: dict = {}
    assert c.default(memo) == "a" and memo == {"x": "a"}
    memo = {"x": "b"}
    assert c.random(memo, random.Random(0)) == "b"
    assert list(c.grid({"x": "b"})) == ["b"]


def test_categorical_random_is_reproducible_and_covers_values() -> None:
    c = Categorical(list(range(10)), label="r")
    first = [c.random(random_state=random.Random(42)) for _ in range(5)]
    second = [c.random(random_state=random.Random(42)) for _ in range(5)]
    assert first == second
    rng = random.Random(1)
    seen = {c.random(random_state=rng) for _ in range(300)}
    assert seen == set(range(10))


def test_categorical_weights_shape_the_distribution() -> None:
    c = Categorical(["rare", "common"], weights=[0.1, 0.9], label="w")
    rng = random.Random(0)
    counts = Counter(c.random(random_state=rng) for _ in range(5000))
    assert 0.07 < counts["rare"] / 5000 < 0.13
    with pytest.raises(ValueError, match="'bad'.*summing to 1"):
        Categorical([1, 2], weights=[0.5, 0.6], label="bad")
    with pytest.raises(ValueError, match="'bad2' has 2 values but 1 weights"):
        Categorical([1, 2], weights=[1.0], label="bad2")


def test_categorical_bad_definitions_name_the_label() -> None:
    with pytest.raises(ValueError, match="must not be empty \\('empty'\\)"):
        Categorical([], label="empty")
    with pytest.raises(AssertionError, match="must be unique, but 2 appears twice in 'twice'"):  # NNI asserted
        Categorical([1, 2, 2], label="twice")
    with pytest.raises(ValueError, match="Default 9 of 'd'"):
        Categorical([1, 2], default=9, label="d")


def test_categorical_bad_samples_name_label_and_fix() -> None:
    c = Categorical([16, 32], label="width")
    with pytest.raises(SampleMissingError) as missing:
        c.freeze({"depth": 2})
    message = str(missing.value)
    assert "width is missing from sample" in message and "'depth'" in message and "'width' is missing" in message
    with pytest.raises(SampleValidationError) as outside:
        c.freeze({"width": 48})
    message = str(outside.value)
    assert "48 not found in [16, 32]" in message and "label 'width'" in message


# ---- CategoricalMultiple ---------------------------------------------------------------------


def test_categorical_multiple_fixed_n_chosen() -> None:
    m = CategoricalMultiple(["a", "b", "c", "d"], n_chosen=2, label="m")
    grid = list(m.grid())
    assert len(grid) == math.comb(4, 2) == 6
    assert len({tuple(g) for g in grid}) == 6
    assert m.default() == ["a", "b"]
    assert m.freeze({"m": ["b", "d"]}) == ["b", "d"]
    assert not m.contains({"m": ["a"]})  # wrong count
    assert not m.contains({"m": ["a", "a"]})  # twice
    assert not m.contains({"m": ["a", "z"]})  # outside
    assert not m.contains({"m": "a"})  # not a list
    rng = random.Random(3)
    for _ in range(50):
        value = m.random(random_state=rng)
        assert len(value) == 2 and m.contains({"m": value})
    with pytest.raises(SampleValidationError, match="must have length 2 \\(label 'm'\\)"):
        m.validate({"m": ["a", "b", "c"]})


def test_categorical_multiple_any_number() -> None:
    m = CategoricalMultiple([1, 2, 3], label="any")
    grid = list(m.grid())
    assert len(grid) == 2**3 and len({tuple(g) for g in grid}) == 8
    assert m.default() == [1, 2, 3]
    assert CategoricalMultiple([1, 2, 3], default=[2], label="d").default() == [2]
    with pytest.raises(ValueError, match="n_chosen=4 of 'big'"):
        CategoricalMultiple([1, 2, 3], n_chosen=4, label="big")


def test_categorical_multiple_weights() -> None:
    m = CategoricalMultiple([0, 1, 2], n_chosen=1, weights=[0.8, 0.1, 0.1], label="wm")
    rng = random.Random(5)
    counts = Counter(m.random(random_state=rng)[0] for _ in range(3000))
    assert counts[0] / 3000 > 0.7


# ---- Numerical -------------------------------------------------------------------------------


def test_uniform_protocol() -> None:
    u = nasflow.uniform("lr", 0.0, 1.0)
    assert isinstance(u, Numerical) and u.label == "lr"
    assert u.freeze({"lr": 0.25}) == 0.25
    assert u.contains({"lr": 1.0}) and not u.contains({"lr": 1.5}) and not u.contains({"lr": "x"})
    assert u.default() == 0.5
    assert not u.is_finite()
    assert list(u.grid(granularity=1)) == [0.5]
    assert list(u.grid(granularity=2)) == [0.25, 0.5, 0.75]
    assert u.simplify() == {"lr": u}
    with pytest.raises(SampleValidationError, match=r"1.5 is higher than upper bound 1.0 \(label 'lr'\)"):
        u.validate({"lr": 1.5})
    rng = random.Random(0)
    values = [u.random(random_state=rng) for _ in range(2000)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert abs(statistics.mean(values) - 0.5) < 0.03


def test_loguniform_median_near_geometric_mean() -> None:
    n = nasflow.loguniform("lr", 1e-4, 1.0)
    rng = random.Random(7)
    values = [n.random(random_state=rng) for _ in range(4000)]
    assert all(1e-4 <= v <= 1.0 for v in values)
    geometric_mean = math.sqrt(1e-4 * 1.0)  # 0.01; the arithmetic mean would be ~0.5
    assert abs(math.log10(statistics.median(values)) - math.log10(geometric_mean)) < 0.15
    # every decade gets about a quarter of the draws
    decades = Counter(math.floor(math.log10(v)) for v in values)
    assert all(abs(decades[d] / 4000 - 0.25) < 0.04 for d in (-4, -3, -2, -1))
    assert n.default() == pytest.approx(geometric_mean)
    assert [round(v, 6) for v in n.grid(granularity=1)] == [0.01]


def test_normal_mean_and_spread() -> None:
    n = nasflow.normal("x", 5.0, 2.0)
    rng = random.Random(11)
    values = [n.random(random_state=rng) for _ in range(4000)]
    assert abs(statistics.mean(values) - 5.0) < 0.15
    assert abs(statistics.stdev(values) - 2.0) < 0.15
    assert n.default() == 5.0
    assert not n.is_finite()
    q1, median, q3 = n.grid(granularity=2)
    assert median == 5.0 and q1 == pytest.approx(5.0 - 0.6745 * 2, abs=1e-3) and q3 == pytest.approx(6.349, abs=1e-3)
    with pytest.raises(ValueError, match="'x2'.*positive sigma"):
        Numerical(mu=0.0, sigma=0.0, label="x2")


def test_quantized_values_are_multiples_and_grid_is_exact() -> None:
    q = nasflow.quniform("q", 0, 10, 2)
    assert not q.is_finite()  # a number's grid depends on the granularity, even quantized (NNI)
    assert list(q.grid()) == [4]  # the median 5, rounded (half to even, like Python) to a multiple of 2
    assert list(q.grid(granularity=4)) == [0, 2, 4, 6, 8, 10]
    rng = random.Random(2)
    values = {q.random(random_state=rng) for _ in range(500)}
    assert values == {0, 2, 4, 6, 8, 10}
    assert q.contains({"q": 4}) and not q.contains({"q": 5})
    with pytest.raises(SampleValidationError, match="5 is not on the boundary and not a multiple of 2 \\(label 'q'\\)"):
        q.validate({"q": 5})


def test_qloguniform_and_qnormal() -> None:
    q = nasflow.qloguniform("ql", 1, 1024, 1)
    rng = random.Random(4)
    values = [q.random(random_state=rng) for _ in range(3000)]
    assert all(v == int(v) and 1 <= v <= 1024 for v in values)
    assert 20 < statistics.median(values) < 45  # geometric mean is 32
    assert len(list(q.grid(granularity=12))) > 800 and list(q.grid()) == [32]
    qn = nasflow.qnormal("qn", 0.0, 3.0, 0.5)
    rng = random.Random(6)
    draws = [qn.random(random_state=rng) for _ in range(500)]
    assert all((v / 0.5) == round(v / 0.5) for v in draws)
    assert abs(statistics.mean(draws)) < 0.4


def test_numerical_bad_definitions() -> None:
    with pytest.raises(ValueError, match="'swap'.*swap them"):
        Numerical(2, 1, label="swap")
    with pytest.raises(ValueError, match="'lg'.*low > 0"):
        Numerical(0, 1, log_distributed=True, label="lg")
    with pytest.raises(ValueError, match="'inf'.*finite low and high"):
        Numerical(label="inf")


def test_number_grid_is_quantiles_at_the_granularity() -> None:
    u = nasflow.uniform("u", 0.0, 1.0)
    assert list(u.grid()) == [0.5]  # granularity 1 by default (NNI)
    assert list(u.grid(granularity=4)) == [k / 16 for k in range(1, 16)]
    assert list(nasflow.quniform("q", 2, 10, 5).grid(granularity=4)) == [2, 5, 10]  # clip(round(x / q) * q)


# ---- shortcuts -------------------------------------------------------------------------------


def test_choice_shortcut_orders() -> None:
    c = nasflow.choice("act", ["relu", "tanh"])
    assert isinstance(c, Categorical) and c.label == "act" and c.values == ["relu", "tanh"]
    swapped = nasflow.choice(["relu", "tanh"], "act")
    assert swapped.label == "act" and swapped.values == ["relu", "tanh"]
    unlabeled = nasflow.choice([1, 2])
    assert unlabeled.values == [1, 2] and unlabeled.label.startswith("global/")
    with pytest.raises(TypeError, match=r"choice\('act'\) has no candidates"):
        nasflow.choice("act")


def test_a_float_for_an_int_value_is_refused_naming_the_label() -> None:
    """16.0 == 16, but a layer built with 16.0 fails inside torch: refuse it at validation, with the fix."""
    import numpy as np

    from nasflow.nn import ModelSpace, MutableLinear

    width = Categorical([8, 16], label="width")
    for bad in (16.0, np.float64(16.0)):
        with pytest.raises(SampleValidationError, match=r"values of 'width' are integers.*give 16 \(an int\)"):
            width.freeze({"width": bad})
    assert width.freeze({"width": np.int64(16)}) == 16  # another integer type is still that int
    with pytest.raises(SampleValidationError, match="not found"):
        width.freeze({"width": 3.5})
    assert Categorical([0.5, 1.0], label="rate").freeze({"rate": 1}) == 1  # an int for a float value is exact
    multiple = CategoricalMultiple([2, 4, 8], label="kernels")
    with pytest.raises(SampleValidationError, match=r"'kernels' are integers.*give 4"):
        multiple.freeze({"kernels": [2, 4.0]})

    class Space(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.fc = MutableLinear(2, nasflow.choice("width", [8, 16]))

    with pytest.raises(SampleValidationError, match="'width'"):
        Space().freeze({"width": 16.0})
    assert Space().freeze({"width": 16}).fc.out_features == 16
