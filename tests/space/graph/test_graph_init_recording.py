"""Init arguments of torch.nn (and basic-unit) modules are recorded while a ModelSpace is built."""

from __future__ import annotations

import threading

import torch
from torch import nn

from nasflow.nn import ModelSpace
from nasflow.nn.init_recording import is_recording, recorded_init_args
from nasflow.space.graph import GraphModelSpace, load_weights_from


class OwnInit(nn.Linear):
    def __init__(self, n: int) -> None:
        super().__init__(n, n, bias=False)


class Gate(nn.Module):
    """A user basic unit: one node, rebuilt from its recorded arguments."""

    _nni_basic_unit = True

    def __init__(self, channels: int, *, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.weight) * self.scale if x.sum() > -1e9 else x  # not traceable, not traced


class Recorded(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        assert is_recording()
        self.linear = nn.Linear(3, 4, bias=False)
        self.conv = nn.Conv2d(2, 2, kernel_size=3, padding=1)
        self.relu = nn.ReLU()
        self.tanh = nn.Tanh()
        self.own = OwnInit(4)
        self.gate = Gate(4, scale=0.5)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True), 1,
                                             enable_nested_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.encoder(self.own(self.relu(self.linear(x))).unsqueeze(1)).squeeze(1))


def test_outermost_init_call_is_recorded_inside_a_space() -> None:
    space = Recorded()
    assert not is_recording()
    assert recorded_init_args(space.linear) == ((3, 4), {"bias": False})
    assert recorded_init_args(space.conv) == ((2, 2), {"kernel_size": 3, "padding": 1})  # not _ConvNd's call
    assert recorded_init_args(space.relu) == ((), {})
    assert recorded_init_args(space.gate) == ((4,), {"scale": 0.5})
    assert recorded_init_args(space.own) is None  # its own __init__ takes other arguments than Linear's


def test_nothing_is_recorded_outside_a_space() -> None:
    assert recorded_init_args(nn.Linear(2, 2)) is None
    assert recorded_init_args(nn.Tanh()) == ((), {})  # nn.Module's init takes no arguments


def test_recording_is_per_thread() -> None:
    seen: list[bool] = []
    thread = threading.Thread(target=lambda: seen.append(is_recording()))

    class Space(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            thread.start()
            thread.join()
            self.fc = nn.Linear(1, 1)

    Space()
    assert seen == [False]


def test_recorded_modules_become_nodes_and_code() -> None:
    torch.manual_seed(0)
    space = Recorded()
    model = GraphModelSpace.from_model(space)
    root = model.root_graph
    assert root.get_node_by_python_name("gate").operation.cls.path.endswith(":Gate")
    assert root.get_node_by_python_name("own").cell is not None  # not a basic unit: traced
    encoder = root.get_node_by_python_name("encoder").operation
    layer = encoder.parameters["args"][0]
    assert layer.cls.path == "torch.nn:TransformerEncoderLayer" and layer.args == (4, 2, 8)
    source = model.code()
    assert "nn.TransformerEncoder(nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True), 1" in source
    generated = model.executable_model()
    report = load_weights_from(space, generated, model)
    assert not report.skipped and len(report.loaded) == len(generated.state_dict())
    x = torch.randn(5, 3)
    assert torch.allclose(generated.eval()(x), space.eval()(x), atol=1e-6)
