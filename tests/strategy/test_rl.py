"""PolicyBasedRL: its controller learns (it beats random on a space with a known best), it is
reproducible, resumable from a JSON state, and it refuses what it cannot search."""

from __future__ import annotations

import statistics

import pytest

import nasflow
from nasflow.nn import ModelSpace, MutableLinear
from nasflow.space import SimplifiedModelSpace
from nasflow.strategy import PolicyBasedRL, Random

BEST = 5 * 64.0  # five layers, each at its widest: the one best sample of 1024


def _rl(seed: int, **kwargs) -> PolicyBasedRL:
    return PolicyBasedRL(seed=seed, samples_per_update=10, **kwargs)


@pytest.mark.parametrize("seed", [0])
def test_learns_to_beat_random(make_space, search, seed) -> None:
    learned = [m.metric for m in search(_rl(seed), make_space(n_layers=5), budget=100).engine.list_models()]
    drawn = [m.metric for m in search(Random(seed=seed), make_space(n_layers=5), budget=100).engine.list_models()]
    # random's mean total width is 150 (sd of a 30-model mean about 9); the policy's late models are far better
    assert statistics.mean(learned[-30:]) > 190 > statistics.mean(drawn[-30:])
    assert statistics.mean(learned[-30:]) > statistics.mean(learned[:30]) + 40  # it improved as it learned
    assert max(learned) == BEST  # and found the known best sample


def test_same_seed_same_samples_and_resume_from_json_state(make_space, search) -> None:
    first = search(_rl(3), make_space(), budget=25)
    assert search(_rl(3), make_space(), budget=25).keys == first.keys
    assert search(_rl(4), make_space(), budget=25).keys != first.keys
    # 25 models then a restart from the JSON state, for 15 more == 40 in one go
    whole = search(_rl(5), make_space(), budget=40).keys
    head = search(_rl(5), make_space(), budget=25)
    tail = search(_rl(5), make_space(), budget=15, state=head.state())
    assert head.keys + tail.keys == whole


def test_invalid_samples_get_their_reward_or_are_skipped(make_space, search) -> None:
    result = search(_rl(0, reward_for_invalid=0.0), make_space(limit=64), budget=20)
    assert all(sum(s.values()) <= 64 for s in result.samples)  # constraint-breaking samples never ran
    assert result.strategy._trajectories > len(result.samples)  # they were learned from, with reward 0


def test_refuses_numbers_and_bad_arguments() -> None:
    class Numeric(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.fc = MutableLinear(2, 2)
            self.add_mutable(nasflow.uniform("lr", 0.0, 1.0))

        def forward(self, x):
            return self.fc(x)

    with pytest.raises(TypeError, match="'lr' is a Numerical"):
        PolicyBasedRL().initialize(SimplifiedModelSpace.from_model(Numeric()), None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown update_kwargs \\['lrr'\\]"):
        PolicyBasedRL(update_kwargs={"lrr": 0.1})
    with pytest.raises(ValueError, match="update_kwargs\\['batch_size'\\] must be at least 1"):
        PolicyBasedRL(update_kwargs={"batch_size": 0})
    with pytest.raises(ValueError, match="update_kwargs\\['lr'\\] must be a non-negative number"):
        PolicyBasedRL(update_kwargs={"lr": float("nan")})
    with pytest.raises(ValueError, match="samples_per_update must be at least 1"):
        PolicyBasedRL(samples_per_update=0)
