"""Bad input to a model space: each error names the label or module and says the fix."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nasflow
from nasflow.mutable import SampleMissingError, SampleValidationError
from nasflow.nn import Cell, InputChoice, LayerChoice, ModelSpace, MutableLinear, Repeat, model_context
from nasflow.space import RawFormatModelSpace, SimplifiedModelSpace


class Net(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.fc = MutableLinear(4, nasflow.choice("width", [8, 16]))
        self.op = LayerChoice([nn.ReLU(), nn.Tanh()], label="op")


def test_missing_label_in_every_freeze_path() -> None:
    space = Net()
    freezers = [
        space.freeze,
        space.rebuild,
        RawFormatModelSpace.from_model(space).freeze,
        SimplifiedModelSpace.from_model(space).freeze,
    ]
    for freeze in freezers:
        with pytest.raises(SampleMissingError) as info:
            freeze({"width": 8})
        message = str(info.value)
        assert "Label op is missing from sample. Existing keys are: ['width']" in message
        assert "The value of 'op' is missing" in message


def test_value_outside_a_choice() -> None:
    space = Net()
    with pytest.raises(SampleValidationError) as info:
        space.freeze({"width": 12, "op": 0})
    assert "12 not found in [8, 16] (label 'width'" in str(info.value)
    assert "give it one of these values" in str(info.value)
    with pytest.raises(SampleValidationError, match="5 not found in \\[0, 1\\] \\(label 'op'"):
        with model_context({"width": 8, "op": 5}):
            Net()


def test_duplicate_labels_with_conflicting_candidates() -> None:
    class Clash(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.a = LayerChoice([nn.ReLU(), nn.Tanh()], label="act")
            self.b = LayerChoice([nn.ReLU(), nn.Tanh(), nn.GELU()], label="act")

    space = Clash()
    for call in (space.simplify, lambda: space.freeze({"act": 0})):
        with pytest.raises(ValueError, match=r"same label 'act' but are different.*distinct labels"):
            call()

    class Shared(ModelSpace):  # the same candidates under one label: one shared decision
        def __init__(self) -> None:
            super().__init__()
            self.a = LayerChoice([nn.ReLU(), nn.Tanh()], label="act")
            self.b = LayerChoice([nn.Sigmoid(), nn.GELU()], label="act")

    model = Shared().freeze({"act": 1})
    assert type(model.a) is nn.Tanh and type(model.b) is nn.GELU


def test_empty_layer_choice() -> None:
    with pytest.raises(ValueError, match="LayerChoice 'nothing' has no candidates; give it at least one module"):
        LayerChoice([], label="nothing")
    with pytest.raises(ValueError, match="LayerChoice 'nothing' has no candidates"):
        with model_context({"nothing": 0}):
            LayerChoice({}, label="nothing")
    with pytest.raises(TypeError, match="LayerChoice 'odd': candidate '1' is 3, not an nn.Module"):
        LayerChoice([nn.ReLU(), 3], label="odd")


def test_n_chosen_larger_than_candidates() -> None:
    with pytest.raises(ValueError) as info:
        InputChoice(2, 3, label="pick")
    message = str(info.value)
    assert "InputChoice 'pick'" in message and "n_chosen=3 is larger than n_candidates=2" in message
    assert "choose at most as many inputs as there are candidates" in message
    with pytest.raises(ValueError, match="InputChoice 'bad': reduction must be one of"):
        InputChoice(2, 1, "max", label="bad")  # type: ignore[arg-type]


def test_input_choice_forward_with_wrong_input_count() -> None:
    with pytest.raises(ValueError, match="InputChoice 'pick' expects 3 candidate inputs, got 2"):
        InputChoice(3, 1, label="pick")([torch.zeros(1), torch.zeros(1)])


def test_mutable_where_a_plain_value_is_required() -> None:
    class CandidatesChoice(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.pick = InputChoice(n_candidates=nasflow.choice("n", [2, 3]), label="pick")

    with pytest.raises(TypeError) as info:
        CandidatesChoice()
    message = str(info.value)
    assert "InputChoice 'pick': n_candidates must be a plain value" in message and "label='n'" in message
    assert "Choose n_candidates before building the module" in message

    class RangeOfChoice(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(nasflow.choice("depth", [1, 2]))])

    with pytest.raises(RuntimeError, match=r"`__index__` is not allowed.*label='depth'\).*ensure_frozen"):
        RangeOfChoice()

    with pytest.raises(TypeError, match="Cell 'c': num_nodes must be a plain value"):
        Cell([nn.Identity()], num_nodes=nasflow.choice("nodes", [1, 2]), label="c")


def test_plain_torch_module_with_a_mutable_argument() -> None:
    class PlainLinear(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, nasflow.choice("w", [4, 8]))

    with pytest.raises(TypeError) as info:
        PlainLinear()
    message = str(info.value)
    assert message.startswith("PlainLinear: the plain module torch.nn.modules.linear.Linear got the mutable")
    assert "Categorical([4, 8], label='w')" in message and "as its argument 'out_features'" in message
    assert "use nasflow.nn.MutableLinear" in message and "ensure_frozen(out_features)" in message

    class PlainConv(ModelSpace):  # torch fails with a ValueError about groups here
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, nasflow.choice("c", [4, 8]) * 2, 3)

    with pytest.raises(TypeError, match=r"PlainConv: .*Conv2d got the mutable Categorical.*label='c'\) \* 2.*"
                                        r"argument 'out_channels'.*nasflow.nn.MutableConv2d"):
        PlainConv()


def test_plain_module_that_silently_kept_a_mutable() -> None:
    class KeptMutable(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.seq = nn.Sequential(nn.Linear(2, 2), nn.ReLU(inplace=nasflow.choice("ip", [True, False])))

    with pytest.raises(TypeError) as info:
        KeptMutable()
    message = str(info.value)
    assert "KeptMutable: module 'seq.1' (torch.nn.modules.activation.ReLU)" in message
    assert "label='ip'" in message and "attribute 'inplace'" in message
    assert "use nasflow.nn.MutableReLU" in message


def test_repeat_bad_inputs() -> None:
    with pytest.raises(ValueError, match="Repeat 'r': 2 blocks given, but the depth can reach 3"):
        Repeat([nn.ReLU(), nn.ReLU()], (1, 3), label="r")
    with pytest.raises(ValueError, match=r"Repeat 'r': depth range must be \(min, max\)"):
        Repeat(nn.ReLU(), (3, 1), label="r")
    with pytest.raises(ValueError, match="Repeat 'r': a depth mutable must take non-negative integers"):
        Repeat(nn.ReLU(), nasflow.choice("d", [1.5, 2.5]), label="r")
    with pytest.raises(ValueError, match="Repeat 'r': depth must be >= 0"):
        Repeat(nn.ReLU(), -1, label="r")


def test_formats_refuse_what_they_cannot_hold() -> None:
    with pytest.raises(TypeError, match="must subclass nasflow.nn.ModelSpace; Sequential does not"):
        SimplifiedModelSpace.from_model(nn.Sequential(nn.ReLU()))
    with pytest.raises(RuntimeError, match="freeze it with a sample first"):
        SimplifiedModelSpace.from_model(Net()).executable_model()


def test_user_plain_module_may_hold_a_mutable_and_resolve_it() -> None:
    class Block(nn.Module):  # a plain module that resolves its choice itself (NNI's ensure_frozen pattern)
        def __init__(self, width: object) -> None:
            super().__init__()
            self.width_choice = width
            self.fc = nn.Linear(2, nasflow.mutable.ensure_frozen(width))

    class UsesBlock(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.block = Block(nasflow.choice("bw", [3, 5]))

    space = UsesBlock()
    assert list(space.simplify()) == ["bw"]
    assert space.rebuild({"bw": 5}).block.fc.out_features == 5

    class PassesOn(ModelSpace):  # but a torch layer inside a user module still gets the clear error
        def __init__(self) -> None:
            super().__init__()
            self.block = nn.Sequential(Wrapper(nasflow.choice("ww", [3, 5])))

    class Wrapper(nn.Module):
        def __init__(self, width: object) -> None:
            super().__init__()
            self.fc = nn.Linear(2, width)  # type: ignore[arg-type]

    with pytest.raises(TypeError, match=r"PassesOn: the plain module torch.nn.modules.linear.Linear got the mutable "
                                        r"Categorical\(\[3, 5\], label='ww'\) as its argument 'out_features'"):
        PassesOn()
