"""nni.mutable as NNI 3.0 documents it: symbols, expressions, containers, constraints, freezing."""

from __future__ import annotations

import math
import warnings
from collections import Counter

import numpy as np
import pytest

import nasflow as nni
from nasflow.mutable import (
    Categorical,
    CategoricalMultiple,
    ConstraintViolation,
    ExpressionConstraint,
    LabeledMutable,
    Mutable,
    MutableDict,
    MutableExpression,
    MutableList,
    Numerical,
    SampleMissingError,
    SampleValidationError,
    ensure_frozen,
    frozen_context,
    frozen_factory,
    label_scope,
    reset_uid,
)
from nasflow.mutable.mutable import _dedup_labeled_mutables, _mutable_equal


def test_expressions_evaluate_by_label_or_position() -> None:
    a, b, c = Categorical([1, 2], label="a"), Categorical([3, 4], label="b"), Categorical([5, 6], label="c")
    d = a + b + 3 * c
    assert d.freeze({"a": 2, "b": 3, "c": 5}) == 20
    assert list(d.grid()) == [x + y + 3 * z for x in (1, 2) for y in (3, 4) for z in (5, 6)]
    assert [s.label for s in d.leaf_symbols()] == ["a", "b", "c"]
    x, y = Categorical(["cat", "dog"], label="x"), Categorical(["milk", "tea"], label="y")
    assert (x + 2 * y).evaluate(["cat", "milk"]) == "catmilkmilk"
    assert (3 - Categorical([1, 2], label="z")).evaluate([1]) == 2
    e = (abs(-Categorical([1, 17], label="aa") * 3) % 11) ** 5
    assert "abs" in repr(e) and e.evaluate([17]) == 7**5
    with pytest.raises(SampleValidationError, match=r"^42 not found in"):
        e.freeze({"aa": 42})
    assert round(7 / Categorical([2, 5], label="r")).evaluate([2]) == 4
    assert (~(77 ^ (Categorical([1, 4], label="bits") & 5))).evaluate([4]) == ~(77 ^ (4 & 5))
    assert math.floor(Categorical([2.5, 3.5], label="f")).evaluate([3.5]) == 3
    assert math.ceil(Categorical([2.5, 3.5], label="g")).evaluate([2.5]) == 3
    assert divmod(Categorical([7, 9], label="dm"), 2).evaluate([9]) == (4, 1)


def test_a_mutable_is_no_plain_value() -> None:
    a, b = Categorical([1, 3], label="a"), Categorical([2, 4], label="b")
    with pytest.raises(RuntimeError, match=r"^Cannot use bool\(\) on SymbolicExpression"):
        min(a, b)
    with pytest.raises(RuntimeError, match=r"^Cannot use bool\(\) on SymbolicExpression"):
        if a < b:
            pass
    with pytest.raises(RuntimeError, match=r"^`__index__` is not allowed on SymbolicExpression"):
        range(a)  # type: ignore[call-overload]
    with pytest.raises(RuntimeError):
        int(Categorical([2.5, 3.5], label="i"))
    with pytest.raises(TypeError, match="not callable"):
        Categorical([0.0, 1.0], label="p")()  # type: ignore[operator]


def test_expression_helpers() -> None:
    a, b = Categorical([1, 3], label="a"), Categorical([2, 4], label="b")
    assert MutableExpression.min(a, b).evaluate([3, 2]) == 2
    assert MutableExpression.max(a, b).evaluate([3, 2]) == 3
    assert MutableExpression.max(1, 2, 3) == 3 and MutableExpression.max([1, 3, 2]) == 3
    cond = MutableExpression.condition(Categorical([2, 3], label="c") <= 2, "a", "b")
    assert cond.evaluate([3]) == "b" and cond.evaluate([2]) == "a"
    assert MutableExpression.to_int(Categorical([2.5, 3.5], label="t")).evaluate([2.5]) == 2
    assert MutableExpression.to_float(Categorical(["2.5", "3.5"], label="s")).evaluate(["3.5"]) == 3.5
    assert Categorical([2.5, 3.5], label="u").int().evaluate([3.5]) == 3


def test_make_divisible_with_expressions() -> None:
    def make_divisible(value, divisor, min_ratio=0.9):  # noqa: ANN001, ANN202
        new_value = MutableExpression.max(divisor, MutableExpression.to_int(value + divisor / 2) // divisor * divisor)
        return MutableExpression.condition(new_value < min_ratio * value, new_value + divisor, new_value)

    def plain(value, divisor, min_ratio=0.9):  # noqa: ANN001, ANN202
        new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
        return new_value + divisor if new_value < min_ratio * value else new_value

    values, divisors = [4, 8, 16, 32, 64, 128], [2, 3, 5, 7, 15]
    result = make_divisible(Categorical(values, label="value"), Categorical(divisors, label="divisor"))
    for value in values:
        for divisor in divisors:
            assert result.evaluate({"value": value, "divisor": divisor}) == plain(value, divisor)
    assert len(list(result.grid())) == 30 and max(result.grid()) == 135


def test_equality_builds_conditions_and_equals_compares() -> None:
    a = Categorical([1, 2, 3], label="x")
    assert (a == 2).freeze({"x": 2}) is True and (a != 2).freeze({"x": 2}) is False
    assert a.equals(Categorical([1, 2, 3], label="x")) and not a.equals(Categorical([1, 2], label="x"))
    assert _mutable_equal({"a": [1, Categorical([1, 2], label="y")]}, {"a": [1, Categorical([1, 2], label="y")]})
    assert not _mutable_equal([1, 2, Categorical([1, 2, 3], label="z")], [1, 2, 3])
    assert _mutable_equal(Categorical([1, 2], label="a") * 0.75 + Numerical(0, 1, label="b"),
                          Categorical([1, 2], label="a") * 0.75 + Numerical(0, 1, label="b"))
    assert not _mutable_equal(Categorical([1, 2], label="a") * 0.75, 0.75 * Categorical([1, 2], label="a"))
    assert len({a, a}) == 1  # hashable (by identity)


def test_categorical_of_tuples_and_dicts_is_indexed() -> None:
    vc = Categorical([(6, 3), (8, 5)], label="vc")
    assert (vc[0] * 2).freeze({"vc": (8, 5)}) == 16 and vc[1].freeze({"vc": (6, 3)}) == 3
    cfg = Categorical([{"b": [3], "bp": [6]}, {"b": [6], "bp": [12]}], label="cfg")
    assert cfg["bp"][0].freeze({"cfg": {"b": [6], "bp": [12]}}) == 12


def test_categorical() -> None:
    a = Categorical([1, 2, 3], label="a")
    assert a.simplify() == {"a": a} and a.freeze({"a": 2}) == 2
    assert a.contains({"a": 3}) and not a.contains({"a": 4})
    assert "not found" in a.check_contains({"a": 4}).msg
    with pytest.raises(AssertionError, match="must be unique"):
        Categorical([2, 2, 5])
    weighted = Categorical([1, 2, 3], weights=[0.2, 0.1, 0.7], label="w")
    assert list(weighted.grid()) == [3, 1, 2]
    counter = Counter(weighted.random(random_state=np.random.RandomState(i)) for i in range(1000))
    assert 120 <= counter[1] <= 280 and 500 <= counter[3] <= 900
    assert Categorical([1, 2, 3], default=2, label="d").default() == 2
    assert repr(Categorical(list(range(100)), label="a")) == "Categorical([0, 1, 2, ..., 97, 98, 99], label='a')"
    assert a.as_legacy_dict() == {"_type": "choice", "_value": [1, 2, 3]}


def test_categorical_multiple_and_its_categorical_format() -> None:
    a = CategoricalMultiple([2, 3, 5], n_chosen=None, label="a")
    assert a.freeze({"a": [2, 3]}) == [2, 3]

    def breakdown(x: Mutable) -> bool:
        return isinstance(x, LabeledMutable) and not isinstance(x, CategoricalMultiple)

    s = a.simplify(is_leaf=breakdown)
    assert len(s) == 3 and s["a/0"].values == [True, False]
    with pytest.raises(SampleValidationError, match="a/2 is missing"):
        a.freeze({"a/0": False, "a/1": True})
    assert a.freeze({"a/0": False, "a/1": True, "a/2": True}) == [3, 5]
    b = CategoricalMultiple([2, 3, 5], n_chosen=2, label="b")
    assert len(b.simplify(is_leaf=breakdown)) == 4 and isinstance(b.simplify(is_leaf=breakdown)["b/n"],
                                                                 ExpressionConstraint)
    with pytest.raises(SampleValidationError, match="must have length 2"):
        b.freeze({"b": [2, 3, 5]})
    with pytest.raises(SampleValidationError, match="is not satisfied"):
        b.freeze({"b/0": False, "b/1": False, "b/2": True})
    assert list(CategoricalMultiple([1, 2, 3], label="c").grid()) == [
        [], [1], [2], [3], [1, 2], [1, 3], [2, 3], [1, 2, 3]]
    assert CategoricalMultiple([5, 3, 7], n_chosen=None, label="d").default() == [5, 3, 7]


def test_numerical() -> None:
    a = Numerical(0, 1, label="a")
    assert repr(a) == "Numerical(0, 1, label='a')"
    assert a.default() == 0.5 and list(a.grid()) == [0.5] and list(a.grid(granularity=2)) == [0.25, 0.5, 0.75]
    assert "higher than" in a.check_contains({"a": 4}).msg
    assert min(Numerical(mu=0, sigma=1, low=-1, high=1, label="n").grid(granularity=4)) == -1
    assert all(x > 0 for x in (Numerical(mu=0, sigma=1, log_distributed=True, label="ln").random() for _ in range(20)))
    q = Numerical(low=0, high=100, quantize=2, label="q")
    assert len(list(q.grid(granularity=10))) == 51 and q.random() % 2 == 0
    with pytest.raises(SampleValidationError, match="than lower bound"):
        Numerical(low=2, high=6, log_distributed=True, label="x").freeze({"x": 1.5})
    with pytest.raises(ValueError, match="not a multiple of"):
        Numerical(0, 1, default=0.5, quantize=0.3)
    assert Numerical(0, 1, quantize=0.3).default() == pytest.approx(0.6)
    from scipy.stats import beta

    custom = Numerical(distribution=beta(2, 5), label="beta")
    assert 0 < custom.random() < 1 and 0.1 < custom.default() < 0.3
    with pytest.raises(SampleValidationError, match="not in the distribution"):
        custom.freeze({"beta": 1.5})


def test_shortcuts() -> None:
    assert repr(nni.choice("x", [1, 2, 3])) == "Categorical([1, 2, 3], label='x')"
    assert nni.randint("r", 1, 5).values == [1, 2, 3, 4]
    assert repr(nni.uniform("u", 0, 1)) == "Numerical(0, 1, label='u')"
    assert nni.quniform("q", 2, 10, 5).quantize == 5
    expected = [3.1622776601683795e-05, 0.0001, 0.00031622776601683794]
    assert list(nni.loguniform("lu", 1e-5, 1e-3).grid(granularity=2)) == pytest.approx(expected)
    assert nni.lognormal("ln", 4.0, 2.0).log_distributed
    assert nni.qlognormal("qln", 4.0, 2.0, 1.0).quantize == 1.0
    assert [round(math.log(v), 6) for v in nni.lognormal("ln", 4.0, 2.0).grid(granularity=2)] == pytest.approx(
        [2.65102, 4.0, 5.34898], abs=1e-5)
    with pytest.raises(ValueError, match="strictly"):
        nni.uniform("bad", 1, 0)
    with pytest.raises(ValueError, match="strictly"):
        nni.normal("bad", 0, 0)


def test_containers() -> None:
    lst = MutableList([1, Categorical([1, 2, 3], label="l1"), 3])
    assert lst.default() == [1, 1, 3]
    lst.append(Categorical([4, 5, 6], label="l2"))
    assert lst.default() == [1, 1, 3, 4] and len(lst[1:]) == 3
    d = MutableDict({"a": 1, "b": Categorical([1, 2, 3], label="d1"), "c": 3})
    assert list(d.grid()) == [{"a": 1, "b": v, "c": 3} for v in (1, 2, 3)]
    d.pop("b")
    assert d.random() == {"a": 1, "c": 3}
    d["b"] = Numerical(0, 1, label="d2")
    assert d.default() == {"a": 1, "c": 3, "b": 0.5}
    assert MutableDict(a=Categorical([1, 2], label="k1")).keys() == {"a"}
    shared = MutableList([MutableDict({"out": Categorical([10, 20], label="hidden") * 2}),
                          MutableDict({"out": Categorical([10, 20], label="hidden") * 4})])
    sample = shared.random()
    assert sample[0]["out"] * 2 == sample[1]["out"]


def test_constraints_and_robust_default() -> None:
    x, y = Categorical([1, 2, 3], label="x"), Categorical([4, 5, 6], label="y")
    with pytest.raises(ConstraintViolation):
        ExpressionConstraint(x + y == 6).default()
    sample: dict = {}
    assert ExpressionConstraint(x + y == 6).robust_default(sample) is None and sample["x"] + sample["y"] == 6
    with pytest.raises(ValueError, match=r"after \d+ retries"):
        ExpressionConstraint(x + y == 10).robust_default(retries=100)
    assert len(list(ExpressionConstraint(x + y == 7).grid())) == 3
    assert list(MutableDict({"c": ExpressionConstraint(x + y == 7), "a": x, "b": y}).grid()) == [
        {"c": None, "a": 1, "b": 6}, {"c": None, "a": 2, "b": 5}, {"c": None, "a": 3, "b": 4}]
    lst = MutableList([ExpressionConstraint(x + y == 7), x, y]).robust_default()
    assert lst[1] + lst[2] == 7


def test_dedup_and_leaf_checks() -> None:
    a, b = Categorical([1, 2, 3], label="a"), Categorical([1, 2, 3], label="a")
    assert len(_dedup_labeled_mutables([a, b])) == 1
    with pytest.raises(ValueError, match="are different"):
        _dedup_labeled_mutables([a, Categorical([1, 2, 3, 4], label="a")])
    with pytest.raises(ValueError, match=r"is_leaf\(\) should return"):
        a.simplify(is_leaf=lambda m: False)
    assert repr(Mutable()) == "Mutable()"
    assert not Numerical(0, 1, label="n", default=0.5).equals(Numerical(0, 1, label="n", default=0.3))


def test_random_takes_numpy_state() -> None:
    lst = MutableList([Categorical([1, 2, 3], label="c"), Numerical(4, 6, label="z"), Numerical(mu=0, sigma=1,
                                                                                                  label="m"),
                       Numerical(4, 6, label="z")])
    first = lst.random(random_state=np.random.RandomState(0))
    assert first == lst.random(random_state=np.random.RandomState(0)) and first[1] == first[3]
    assert len(list(lst.grid())) == 3


def test_ensure_frozen_and_frozen_context() -> None:
    with pytest.raises(RuntimeError, match="No frozen context"):
        ensure_frozen(Categorical([1, 2, 3], label="a"))
    assert ensure_frozen(Categorical([1, 2, 3], label="a"), strict=False) == 1
    assert ensure_frozen(Categorical([1, 2, 3], label="a"), sample={"a": 2}, strict=False) == 2
    assert ensure_frozen("anything", strict=False) == "anything"
    with frozen_context({"a": 2}):
        assert ensure_frozen(Categorical([1, 2, 3], label="a")) == 2
        with frozen_context():
            frozen_context.update({"lr": 0.1})
            assert frozen_context.current() == {"a": 2, "lr": 0.1}
        with frozen_context.bypass():
            assert frozen_context.current() is None
    with frozen_context():
        with pytest.raises(SampleMissingError):
            ensure_frozen(Categorical([1, 2, 3], label="b"))
    factory = frozen_factory(lambda scale: ensure_frozen(Categorical([1, 2], label="f")) * scale, {"f": 2})
    assert factory(10) == 20


def test_reset_uid_restarts_global_numbering() -> None:
    reset_uid("global")
    first = Categorical([1, 2]).label
    reset_uid("global")
    assert Categorical([1, 2]).label == first == "global/1"
    with label_scope("scope"):
        assert Categorical([1, 2]).label == "scope/1"


def test_legacy_value_choice_warns_and_still_works() -> None:
    from nasflow.nn import ValueChoice

    with pytest.deprecated_call():
        vc = ValueChoice([3, 5], label="kz")
    assert isinstance(vc, Categorical) and vc.candidates == [3, 5] and vc.freeze({"kz": 5}) == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Categorical([3, 5], label="kz")  # the new name does not warn
