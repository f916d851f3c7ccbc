"""Traced objects: recorded arguments, comparison by arguments, recipe pickling, mutables."""

from __future__ import annotations

import pickle
import subprocess
import sys
from typing import Any

import cloudpickle
import pytest
import torch
from torch.utils.data import TensorDataset

import nasflow
from nasflow.evaluator import DataLoader, Traced
from nasflow.evaluator.traced import trace_arguments, trace_equal, trace_freeze, trace_key, trace_mutables


class Point(Traced):
    def __init__(self, x: int, y: int = 0, *rest: Any, **extra: Any) -> None:
        self.x, self.y = x, y


class Point3(Point):
    def __init__(self, x: int, y: int, z: int = 0) -> None:
        super().__init__(x, y)
        self.z = z


class Inherited(Point):
    pass


class KeyedDataset(TensorDataset):
    def __init__(self, key: str, *tensors: torch.Tensor) -> None:
        super().__init__(*tensors)
        self.nasflow_data_key = key


def test_outermost_constructor_records_and_binds_defaults() -> None:
    p = Point3(1, 2)
    assert p.trace_args == (1, 2) and p.trace_kwargs == {}
    assert trace_arguments(p) == {"x": 1, "y": 2, "z": 0}
    assert trace_arguments(Inherited(5)) == {"x": 5, "y": 0, "rest": (), "extra": {}}
    assert trace_equal(Point(1, y=0), Point(x=1)) and not trace_equal(Point(1), Point(2))
    assert not trace_equal(Point(1, 2), Point3(1, 2, 0))  # class matters
    copy = p.trace_copy()
    assert copy is not p and trace_equal(copy, p) and copy.z == 0


def test_keys_compare_values_by_value_and_objects_by_identity() -> None:
    tensor = torch.zeros(3)
    assert trace_key([1, "a", None, torch.float32]) == trace_key([1, "a", None, torch.float32])
    assert trace_key(1) != trace_key(True) and trace_key((1,)) != trace_key([1])
    assert trace_key({"a": tensor}) == trace_key({"a": tensor})
    assert trace_key({"a": tensor}) != trace_key({"a": torch.zeros(3)})  # equal values, another tensor
    hash(trace_key({"a": [tensor, Point(1)], "b": {1, 2}}))


def test_dataloaders_compare_by_dataset_identity_and_arguments() -> None:
    ds = TensorDataset(torch.arange(10.0))
    assert trace_equal(DataLoader(ds, 4), DataLoader(ds, batch_size=4))
    assert trace_equal(DataLoader(ds, batch_size=4, num_workers=0), DataLoader(ds, batch_size=4))
    assert not trace_equal(DataLoader(ds, batch_size=4), DataLoader(ds, batch_size=5))
    assert not trace_equal(DataLoader(ds, batch_size=4), DataLoader(TensorDataset(torch.arange(10.0)), batch_size=4))


def test_dataloader_pickles_as_recipe() -> None:
    ds = KeyedDataset("ten", torch.arange(10.0))
    loader = DataLoader(ds, batch_size=4, shuffle=True)
    iter(loader)  # iterator state must not travel
    copy = cloudpickle.loads(cloudpickle.dumps(loader))
    assert isinstance(copy, DataLoader) and copy.batch_size == 4 and copy.dataset is not ds
    assert trace_equal(copy, loader)  # equal through the explicit data key, across pickling
    assert sorted(torch.cat([b[0] for b in copy]).tolist()) == list(range(10))
    plain = pickle.loads(pickle.dumps(DataLoader(TensorDataset(torch.arange(3.0)), batch_size=2)))
    assert len(list(plain)) == 2
    assert not trace_equal(KeyedDataset("ten", torch.arange(10.0)), KeyedDataset("other", torch.arange(10.0)))


def test_mutables_in_arguments_are_found_and_frozen() -> None:
    lr = nasflow.choice("lr", [0.1, 0.01])
    shared = TensorDataset(torch.arange(4.0))
    point = Point(lr, y=[shared, {"depth": nasflow.choice("depth", [1, 2])}])
    assert sorted(m.label for m in trace_mutables(point)) == ["depth", "lr"]
    frozen = trace_freeze(point, {"lr": 0.01, "depth": 2})
    assert frozen.x == 0.01 and frozen.y[1] == {"depth": 2}
    assert frozen.y[0] is shared  # what holds no mutable keeps its identity
    plain = Point(1, y=[shared])
    assert trace_freeze(plain, {}) is plain


def test_trainer_refuses_mutable_settings() -> None:
    from nasflow.evaluator import Trainer

    with pytest.raises(TypeError, match="max_epochs"):
        Trainer(max_epochs=nasflow.choice("epochs", [1, 2]))


def test_importing_evaluators_does_not_import_lightning() -> None:
    script = "import sys, nasflow.evaluator as e; assert 'lightning' not in sys.modules; e.DataLoader; print('ok')"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
