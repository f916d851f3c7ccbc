"""Expressions, containers, constraints, whole-space grid/random, labels and frozen contexts."""

from __future__ import annotations

import math
import random

import pytest

import nasflow
from nasflow.mutable import (
    Categorical,
    CategoricalMultiple,
    ConstraintViolation,
    ExpressionConstraint,
    MutableDict,
    MutableExpression,
    MutableList,
    SampleValidationError,
    auto_label,
    ensure_frozen,
    frozen_context,
    label_scope,
)

# ---- expressions -----------------------------------------------------------------------------


def test_arithmetic_expressions_freeze_to_numbers() -> None:
    a = nasflow.choice("a", [1, 2, 4])
    b = nasflow.choice("b", [3, 5])
    sample = {"a": 4, "b": 3}
    assert (a * 16).freeze(sample) == 64
    assert (16 * a).freeze(sample) == 64
    assert (a + b).freeze(sample) == 7
    assert (b - a).freeze(sample) == -1
    assert (10 - a).freeze(sample) == 6
    assert (b / a).freeze(sample) == 0.75
    assert (b // 2).freeze(sample) == 1
    assert (b % a).freeze(sample) == 3
    assert (a**2).freeze(sample) == 16
    assert (-a).freeze(sample) == -4
    assert abs(b - a * 2).freeze(sample) == 5
    assert round(a / b, 2).freeze(sample) == 1.33


def test_max_min_condition_and_conversions() -> None:
    a = nasflow.choice("a", [1, 8])
    b = nasflow.choice("b", [4, 6])
    assert MutableExpression.max(a, b).freeze({"a": 8, "b": 4}) == 8
    assert MutableExpression.max(a, b).freeze({"a": 1, "b": 6}) == 6
    assert MutableExpression.min(a, b, 5).freeze({"a": 8, "b": 6}) == 5
    assert MutableExpression.max([1, 2, 3]) == 3  # no mutable: evaluated at once
    cond = MutableExpression.condition(a > 4, b * 2, 0)
    assert cond.freeze({"a": 8, "b": 6}) == 12
    assert cond.freeze({"a": 1, "b": 6}) == 0
    assert MutableExpression.condition(True, 1, 2) == 1
    assert MutableExpression.to_int(a / 3).freeze({"a": 8}) == 2
    assert MutableExpression.to_float(a).freeze({"a": 1}) == 1.0 and isinstance(
        MutableExpression.to_float(a).freeze({"a": 1}), float
    )
    assert MutableExpression.ceil(a / 3).freeze({"a": 8}) == 3
    assert MutableExpression.floor(a / 3).freeze({"a": 8}) == 2


def test_comparisons_and_equality_conditions() -> None:
    a = nasflow.choice("a", [1, 2, 3])
    assert (a < 2).freeze({"a": 1}) is True
    assert (a <= 2).freeze({"a": 3}) is False
    assert (a > 2).freeze({"a": 3}) is True
    assert (a >= 3).freeze({"a": 2}) is False
    assert MutableExpression.eq(a, 2).freeze({"a": 2}) is True
    assert MutableExpression.ne(a, 2).freeze({"a": 2}) is False
    assert ((a > 1) & (a < 3)).freeze({"a": 2}) is True
    assert ((a < 2) | (a > 2)).freeze({"a": 2}) is False
    assert (~a).freeze({"a": 1}) == -2  # bitwise, as in Python and NNI
    assert (a == 2).freeze({"a": 2}) is True and (a != 2).freeze({"a": 2}) is False  # == builds a condition (NNI)
    assert (a == a) is True and len({a, a}) == 1  # ...but a mutable still equals itself and hashes by identity
    assert a.equals(nasflow.choice("a", [1, 2, 3])) and not a.equals(nasflow.choice("a", [1, 2]))


def test_expression_leaves_and_shared_labels() -> None:
    a = nasflow.choice("a", [1, 2])
    b = nasflow.choice("b", [3, 4])
    expr = a * b + a
    assert [m.label for m in expr.leaf_mutables()] == ["a", "b", "a"]
    assert list(expr.simplify()) == ["a", "b"]
    assert expr.default() == 1 * 3 + 1
    assert sorted(expr.grid()) == sorted(x * y + x for x in (1, 2) for y in (3, 4))
    with pytest.raises(SampleValidationError, match="'b' is missing"):
        expr.freeze({"a": 1})
    assert "Categorical([1, 2], label='a')" in repr(expr)


def test_mutable_as_plain_value_is_refused_with_a_fix() -> None:
    a = nasflow.choice("depth", [1, 2])
    with pytest.raises(RuntimeError, match=r"`__index__` is not allowed.*label='depth'.*ensure_frozen"):
        range(a)  # type: ignore[call-overload]
    with pytest.raises(RuntimeError, match=r"Cannot use bool\(\).*MutableExpression.condition"):
        bool(a > 1)
    with pytest.raises(RuntimeError, match=r"MutableExpression.to_int"):
        int(a)


# ---- containers ------------------------------------------------------------------------------


def test_mutable_list_and_dict() -> None:
    a = nasflow.choice("a", [1, 2])
    lst = MutableList([a, a * 10, "plain"])
    assert lst.freeze({"a": 2}) == [2, 20, "plain"]
    assert list(lst.simplify()) == ["a"]
    assert lst.default() == [1, 10, "plain"]
    assert len(lst) == 3 and lst[2] == "plain"
    d = MutableDict({"width": nasflow.choice("w", [8, 16]), "act": "relu", "depth": a})
    assert d.freeze({"w": 16, "a": 1}) == {"width": 16, "act": "relu", "depth": 1}
    assert list(d.simplify()) == ["w", "a"]
    assert list(d.grid()) == [
        {"width": 8, "act": "relu", "depth": 1},
        {"width": 8, "act": "relu", "depth": 2},
        {"width": 16, "act": "relu", "depth": 1},
        {"width": 16, "act": "relu", "depth": 2},
    ]
    assert not d.contains({"w": 16}) and d.contains({"w": 16, "a": 2})


def test_duplicate_labels_with_conflicting_candidates_raise_naming_label() -> None:
    space = MutableList([Categorical([1, 2], label="dup"), Categorical([1, 3], label="dup")])
    with pytest.raises(ValueError, match=r"same label 'dup' but are different.*distinct labels"):
        space.simplify()
    # identical definitions share one decision
    shared = MutableList([Categorical([1, 2], label="same"), Categorical([1, 2], label="same")])
    assert list(shared.simplify()) == ["same"]
    assert shared.freeze({"same": 2}) == [2, 2]


# ---- grid / random over whole spaces ---------------------------------------------------------


def _finite_space() -> tuple[MutableDict, int]:
    space = MutableDict(
        {
            "a": Categorical([1, 2, 3], label="a"),
            "m": CategoricalMultiple(["x", "y", "z"], n_chosen=2, label="m"),
            "q": nasflow.quniform("q", 0, 1, 0.5),
            "expr": nasflow.choice("b", [10, 20]) * Categorical([1, 2, 3], label="a"),
        }
    )
    return space, 3 * 3 * 3 * 2


def test_grid_enumerates_each_sample_once_at_a_granularity() -> None:
    space, size = _finite_space()
    points = list(space.grid(granularity=2))  # the quantized number: quartiles 0.25/0.5/0.75 -> 0.0, 0.5, 1.0
    assert len(points) == size == 54
    keys = {(p["a"], tuple(p["m"]), p["q"], p["expr"]) for p in points}
    assert len(keys) == size
    assert {p["expr"] // p["a"] for p in points} == {10, 20}
    assert len(list(space.grid())) == 18  # granularity 1 (NNI's default): a number is its median
    assert not space.is_finite()  # numbers depend on the granularity


def test_grid_of_numbers_refines_with_granularity() -> None:
    space = MutableList([nasflow.choice("c", ["p", "q"]), nasflow.uniform("u", 0.0, 1.0)])
    assert not space.is_finite()
    assert list(space.grid()) == [["p", 0.5], ["q", 0.5]]
    assert list(space.grid(granularity=2)) == [[c, u] for c in "pq" for u in (0.25, 0.5, 0.75)]
    assert [p[1] for p in space.grid(granularity=3)][:7] == [0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875]


def test_random_with_seeded_state_is_reproducible() -> None:
    space, _ = _finite_space()
    space2 = MutableList([nasflow.uniform("u", 0, 1), nasflow.normal("n", 0, 1), space])
    draws = [space2.random(random_state=random.Random(123)) for _ in range(3)]
    assert draws[0] == draws[1] == draws[2]
    rng = random.Random(9)
    varied = [space2.random(random_state=rng) for _ in range(20)]
    assert len({repr(v) for v in varied}) == 20
    memo: dict = {}
    value = space.random(memo, random.Random(0))
    assert set(memo) == {"a", "m", "q", "b"} and value == space.freeze(memo)


def test_expression_constraint_filters_random_and_grid() -> None:
    a = nasflow.choice("a", [1, 2, 3, 4])
    b = nasflow.choice("b", [1, 2, 3, 4])
    constraint = ExpressionConstraint(a + b <= 4, label="budget")
    space = MutableList([a, b, constraint])
    assert list(space.simplify()) == ["a", "b", "budget"]
    points = list(space.grid())
    expected = [[x, y, None] for x in range(1, 5) for y in range(1, 5) if x + y <= 4]
    assert points == expected and len(points) == 6
    rng = random.Random(0)
    samples = [space.random(random_state=rng) for _ in range(200)]
    assert all(x + y <= 4 for x, y, _ in samples)
    assert {(x, y) for x, y, _ in samples} == {(x, y) for x, y, _ in expected}
    with pytest.raises(ConstraintViolation, match=r"\(a \+ b\) <= 4 is not satisfied \(constraint 'budget'\)"):
        space.freeze({"a": 4, "b": 4})
    assert constraint.contains({"a": 1, "b": 1}) and not constraint.contains({"a": 3, "b": 3})


def test_unsatisfiable_constraint_says_how_to_fix() -> None:
    a = nasflow.choice("a", [5, 6])
    space = MutableList([a, ExpressionConstraint(a < 0, label="never")])
    with pytest.raises(ConstraintViolation, match="Loosen the ExpressionConstraints"):
        space.random(random_state=random.Random(0))
    assert list(space.grid()) == []


def test_constraint_needs_an_expression() -> None:
    with pytest.raises(TypeError, match="ExpressionConstraint needs an expression"):
        ExpressionConstraint(True, label="c")


# ---- labels ----------------------------------------------------------------------------------


def _build_scoped() -> list[str]:
    with label_scope("block"):
        first = nasflow.choice([1, 2])
        with label_scope():
            inner = nasflow.choice([1, 2])
        with label_scope("named"):
            named = Categorical([1, 2])
        last = Categorical([3])
    return [first.label, inner.label, named.label, last.label]


def test_label_scope_is_reproducible() -> None:
    labels = _build_scoped()
    assert labels == ["block/1", "block/2/1", "block/named/1", "block/3"]
    assert _build_scoped() == labels  # counters restart each time the scope is entered


def test_scopes_prefix_explicit_labels_and_nest_like_paths() -> None:
    with label_scope("model"):
        assert [auto_label(), auto_label(), auto_label("foo")] == ["model/1", "model/2", "model/foo"]
        with label_scope():
            assert auto_label() == "model/3/1"
        with label_scope("model"):
            assert auto_label() == "model/model/1"
        assert label_scope.current().name == "model"
    assert auto_label("bar") == "bar"  # no scope: kept as given
    with pytest.raises(ValueError, match="cannot be empty"):
        auto_label("")
    with label_scope("outer"):  # nasflow reads a `/` as a path (NNI refuses it)
        assert Categorical([1, 2], label="a/b").label == "outer/a/b"


# ---- frozen context --------------------------------------------------------------------------


def test_ensure_frozen_and_frozen_context() -> None:
    a = nasflow.choice("a", [2, 3])
    assert ensure_frozen(7) == 7
    with pytest.raises(RuntimeError, match="No frozen context"):
        ensure_frozen(a)  # outside a context and a space: strict by default (NNI)
    assert ensure_frozen(a, strict=False) == 2
    assert ensure_frozen(a, sample={"a": 3}) == 3
    with frozen_context({"a": 3}):
        assert ensure_frozen(a) == 3
        assert ensure_frozen(a * 2) == 6
        with frozen_context({"b": 1}):
            assert frozen_context.current() == {"a": 3, "b": 1}
        with frozen_context({"a": 2}):
            assert ensure_frozen(a) == 2
            frozen_context.update({"c": 4})
            assert frozen_context.current() == {"a": 2, "c": 4}
        assert "c" not in frozen_context.current()
        with frozen_context.bypass():
            assert frozen_context.current() is None
    assert frozen_context.current() is None
    with frozen_context({"a": 5}):
        with pytest.raises(SampleValidationError, match=r"ensure_frozen could not resolve.*5 not found in \[2, 3\]"):
            ensure_frozen(a)


def test_default_uses_every_leaf_default() -> None:
    space = MutableDict({"n": nasflow.loguniform("n", 1, 100), "c": Categorical(["x", "y"], default="y", label="c")})
    value = space.default()
    assert value["c"] == "y" and math.isclose(value["n"], 10.0)
