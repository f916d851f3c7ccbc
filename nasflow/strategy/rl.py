"""``PolicyBasedRL``: a controller trained by policy gradient (PPO) to propose good models, in plain torch."""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from nasflow.execution import ModelEvent
from nasflow.space import ExecutableModelSpace

from .learning import LearningStrategy
from .rl_controller import DecisionSteps, LSTMController
from .utils import check_int, check_seed, value_leaves

__all__ = ["PolicyBasedRL"]

_logger = logging.getLogger(__name__)

PolicyFactory = Callable[[Sequence[int]], nn.Module]
_UPDATE_DEFAULTS = {"batch_size": 32, "repeat": 5, "update_times": 5, "lr": 0.01, "clip": 0.2,
                    "entropy_coef": 0.01, "value_coef": 0.5}


class PolicyBasedRL(LearningStrategy):
    """Policy-based reinforcement learning (Zoph and Le, 2017), trained with PPO (Schulman et al., 2017).

    A controller proposes a model decision by decision; the model's final metric is the reward of
    that trajectory. Every ``samples_per_update`` finished models, the policy is updated on the
    latest ``replay_buffer_size`` trajectories (default: ``samples_per_update``): ``update_times``
    rounds of ``repeat`` epochs of minibatches of ``batch_size``, with advantages normalized per
    update. ``update_kwargs`` also takes ``lr`` (Adam), ``clip`` (PPO's ratio clip),
    ``entropy_coef`` and ``value_coef``.

    ``reward_for_invalid`` is the reward of a sample the space refuses (its constraints) or of a
    model that ended without a metric; None skips them. ``policy_fn(action_sizes)`` builds another
    controller with ``LSTMController``'s ``forward`` and ``sample``. As in NNI the arguments are
    keyword-only; unlike NNI no tianshou is needed.
    """

    _invalid_patience = 20

    def __init__(self, *, samples_per_update: int = 20, replay_buffer_size: int | None = None,
                 reward_for_invalid: float | None = None, policy_fn: PolicyFactory | None = None,
                 update_kwargs: dict[str, Any] | None = None, seed: int | None = None) -> None:
        super().__init__()
        owner = "PolicyBasedRL"
        self.samples_per_update = check_int(owner, "samples_per_update", samples_per_update, 1)
        self.replay_buffer_size = check_int(owner, "replay_buffer_size", replay_buffer_size, 1, allow_none=True)
        if reward_for_invalid is not None and not isinstance(reward_for_invalid, (int, float)):
            raise TypeError(f"{owner}: reward_for_invalid must be a number or None, got {reward_for_invalid!r}.")
        self.reward_for_invalid = reward_for_invalid
        unknown = sorted(set(update_kwargs or {}) - set(_UPDATE_DEFAULTS))
        if unknown:
            raise ValueError(f"{owner}: unknown update_kwargs {unknown}; the keys are {sorted(_UPDATE_DEFAULTS)}.")
        self.update_kwargs = {**_UPDATE_DEFAULTS, **(update_kwargs or {})}
        for key in ("batch_size", "repeat", "update_times"):
            check_int(owner, f"update_kwargs[{key!r}]", self.update_kwargs[key], 1)
        for key in ("lr", "clip", "entropy_coef", "value_coef"):
            value = self.update_kwargs[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != value:
                raise ValueError(f"{owner}: update_kwargs[{key!r}] must be a non-negative number, got {value!r}.")
        self.policy_fn = policy_fn or LSTMController
        self.seed = check_seed(owner, seed)
        self._generator = torch.Generator().manual_seed(seed if seed is not None else torch.seed())
        self._steps: DecisionSteps | None = None
        self._policy: nn.Module | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self._buffer: deque[tuple[list[int], list[float], float]] = deque()  # actions, log-probs, reward
        self._running: dict[int, tuple[list[int], list[float]]] = {}
        self._trajectories = 0

    # ---- lifecycle ----------------------------------------------------------------------------
    def _prepare(self, model_space: ExecutableModelSpace) -> None:
        self._steps = DecisionSteps(value_leaves(model_space.simplify()))
        with torch.random.fork_rng():
            torch.manual_seed(int(torch.randint(2**31, (1,), generator=self._generator)))
            self._policy = self.policy_fn(self._steps.sizes)
        self._optimizer = torch.optim.Adam(self._policy.parameters(), lr=self.update_kwargs["lr"])
        self._buffer = deque(maxlen=self.replay_buffer_size or self.samples_per_update)

    def _run(self) -> None:
        assert self._steps is not None and self._policy is not None
        invalid = 0
        while self.wait_for_worker():
            actions, log_probs = self._draw()
            sample = self._steps.to_sample(actions)
            if not self.model_space.contains(sample):
                invalid += 1
                if invalid > self._invalid_patience:
                    _logger.warning("PolicyBasedRL: over %d invalid samples in a row; stopping.",
                                    self._invalid_patience)
                    break
                if self.reward_for_invalid is not None:
                    self._learn(actions, log_probs, float(self.reward_for_invalid))
                continue
            invalid = 0
            model = self.model_space.freeze(sample)
            self._running[id(model)] = (actions, log_probs)
            self.engine.submit_models(model)
        self.engine.wait_models(wait_all=True)

    def _draw(self) -> tuple[list[int], list[float]]:
        """A trajectory, and each step's log-probability under the policy that drew it (PPO's ratio)."""
        assert self._steps is not None and self._policy is not None
        self._policy.eval()
        with _one_thread(), torch.no_grad():
            actions = self._policy.sample(self._steps, self._generator)
            tensor = torch.tensor([actions])
            log_probs = self._policy(tensor, self._steps.masks(tensor))[0][0].tolist()
        return actions, log_probs

    def _on_training_end(self, event: ModelEvent) -> None:
        entry = self._running.pop(id(event.model), None)
        if entry is None:
            return
        reward = event.model.score
        if reward is None:
            if self.reward_for_invalid is None:
                return
            reward = float(self.reward_for_invalid)
        self._learn(*entry, reward)

    # ---- learning -----------------------------------------------------------------------------
    def _learn(self, actions: list[int], log_probs: list[float], reward: float) -> None:
        self._buffer.append((actions, log_probs, reward))
        self._trajectories += 1
        if self._trajectories % self.samples_per_update == 0:  # type: ignore[operator]
            self._update()

    def _update(self) -> None:
        with _one_thread():  # a tiny network: threads only add contention (8x slower on a busy 2-core box)
            self._ppo()

    def _ppo(self) -> None:
        """PPO on the buffer: the reward comes at the end (no discount), so every step's return is it."""
        assert self._steps is not None and self._policy is not None and self._optimizer is not None
        kw = self.update_kwargs
        actions = torch.tensor([entry[0] for entry in self._buffer])
        old_log_prob = torch.tensor([entry[1] for entry in self._buffer])
        rewards = torch.tensor([entry[2] for entry in self._buffer], dtype=torch.float32)
        masks = self._steps.masks(actions)
        scale = rewards.std() if len(rewards) > 1 and rewards.std() > 0 else torch.tensor(1.0)
        returns = (rewards - rewards.mean()) / scale  # normalized: metrics of any scale train alike
        self._policy.train()
        for _ in range(kw["update_times"] * kw["repeat"]):
            order = torch.randperm(len(actions), generator=self._generator)
            for start in range(0, len(order), kw["batch_size"]):
                idx = order[start:start + kw["batch_size"]]
                log_probs, entropy, values = self._policy(actions[idx], masks[idx])
                advantage = (returns[idx, None] - values).detach()
                ratio = torch.exp(log_probs - old_log_prob[idx])
                surrogate = torch.min(ratio * advantage, ratio.clamp(1 - kw["clip"], 1 + kw["clip"]) * advantage)
                value_loss = ((values - returns[idx, None]) ** 2).mean()
                loss = -surrogate.mean() + kw["value_coef"] * value_loss - kw["entropy_coef"] * entropy.sum(1).mean()
                self._optimizer.zero_grad()
                loss.backward()
                self._optimizer.step()
        _logger.info("PolicyBasedRL: policy updated on %d trajectories (mean reward %.4g).", len(rewards),
                     float(rewards.mean()))

    # ---- state --------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        assert self._policy is not None and self._optimizer is not None
        return {
            "policy": {k: v.tolist() for k, v in self._policy.state_dict().items()},
            "optimizer": _to_lists(self._optimizer.state_dict()),
            "buffer": [list(entry) for entry in self._buffer],
            "trajectories": self._trajectories,
            "generator": self._generator.get_state().tolist(),
        }

    def _restore(self, state: dict[str, Any]) -> None:
        assert self._policy is not None and self._optimizer is not None
        self._policy.load_state_dict({k: torch.tensor(v) for k, v in state["policy"].items()})
        self._optimizer.load_state_dict(_to_tensors(state["optimizer"]))
        self._buffer.extend((list(a), [float(x) for x in p], float(r)) for a, p, r in state["buffer"])
        self._trajectories = int(state["trajectories"])
        self._generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _to_lists(value: Any) -> Any:
    """An optimizer state with tensors as tagged lists, so the state is plain data."""
    if isinstance(value, torch.Tensor):
        return {"__tensor__": value.tolist()}
    if isinstance(value, dict):
        return {k: _to_lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_lists(v) for v in value]
    return value


def _to_tensors(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__tensor__"}:
            return torch.tensor(value["__tensor__"])
        return {(int(k) if isinstance(k, str) and k.isdigit() else k): _to_tensors(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_tensors(v) for v in value]
    return value
