"""The policy behind ``PolicyBasedRL``: an LSTM controller over a space's discrete decisions.

A space becomes a sequence of steps, each a choice among a few actions: a ``Categorical`` is one
step; a ``CategoricalMultiple`` is one include/leave step per candidate, or, with ``n_chosen=k``,
``k`` picks without repetition. The controller (Zoph and Le, 2017) reads the previous action and
emits the next action's distribution and a value estimate (the critic of PPO).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nasflow.mutable import Categorical, CategoricalMultiple, LabeledMutable, Numerical, Sample

__all__ = ["DecisionSteps", "LSTMController"]


@dataclass(frozen=True)
class _Step:
    label: str
    size: int
    group: int  # steps of one n_chosen pick share a group: actions taken earlier in it are masked


class DecisionSteps:
    """Maps a space's leaves to controller steps and a list of actions back to a sample."""

    def __init__(self, leaves: dict[str, LabeledMutable]) -> None:
        self.leaves = leaves
        self.steps: list[_Step] = []
        for group, (label, leaf) in enumerate(leaves.items()):
            if isinstance(leaf, Categorical):
                self.steps.append(_Step(label, len(leaf.values), -1))
            elif isinstance(leaf, CategoricalMultiple):
                if leaf.n_chosen is None:
                    self.steps.extend(_Step(label, 2, -1) for _ in leaf.values)
                else:
                    self.steps.extend(_Step(label, len(leaf.values), group) for _ in range(leaf.n_chosen))
            elif isinstance(leaf, Numerical):
                raise TypeError(f"PolicyBasedRL chooses among discrete options; {label!r} is a Numerical. Make it a "
                                "nasflow.choice(...) of a few values, or search it with TPE.")
            else:
                raise TypeError(f"PolicyBasedRL cannot search {label!r} ({type(leaf).__name__}); it supports "
                                "Categorical and CategoricalMultiple decisions.")
        if not self.steps:
            raise ValueError("PolicyBasedRL: the space has no decisions to learn.")

    @property
    def sizes(self) -> list[int]:
        return [step.size for step in self.steps]

    def masks(self, actions: torch.Tensor) -> torch.Tensor:
        """``[batch, steps, max_size]`` booleans: True where an action is allowed (within the step's
        size and not already picked earlier in the same n_chosen group)."""
        batch, width = actions.shape[0], max(self.sizes)
        allowed = torch.zeros(batch, len(self.steps), width, dtype=torch.bool)
        for t, step in enumerate(self.steps):
            allowed[:, t, : step.size] = True
            if step.group >= 0:
                for s in range(t):
                    if self.steps[s].group == step.group:
                        allowed[torch.arange(batch), t, actions[:, s]] = False
        return allowed

    def to_sample(self, actions: Sequence[int]) -> Sample:
        sample: Sample = {}
        picks: dict[str, list[int]] = {}
        for step, action in zip(self.steps, actions, strict=True):
            picks.setdefault(step.label, []).append(int(action))
        for label, leaf in self.leaves.items():
            chosen = picks[label]
            if isinstance(leaf, Categorical):
                sample[label] = leaf.values[chosen[0]]
            elif leaf.n_chosen is None:  # type: ignore[attr-defined]
                sample[label] = [v for v, keep in zip(leaf.values, chosen, strict=True) if keep]  # type: ignore[attr-defined]
            else:
                sample[label] = [leaf.values[i] for i in sorted(chosen)]  # type: ignore[attr-defined]
        return sample


class LSTMController(nn.Module):
    """``forward(actions)`` gives, for each step of each trajectory, the log-probability of the
    action taken, the policy's entropy and the critic's value; ``sample`` draws one trajectory."""

    def __init__(self, sizes: Sequence[int], hidden_size: int = 64) -> None:
        super().__init__()
        self.sizes = list(sizes)
        self.width = max(self.sizes)
        self.offsets = [0]
        for size in self.sizes[:-1]:
            self.offsets.append(self.offsets[-1] + size)
        self.embedding = nn.Embedding(sum(self.sizes) + 1, hidden_size)  # token 0 starts a trajectory
        self.cell = nn.LSTMCell(hidden_size, hidden_size)
        self.policy_head = nn.Linear(hidden_size, len(self.sizes) * self.width)
        self.value_head = nn.Linear(hidden_size, len(self.sizes))

    def _step(self, token: torch.Tensor, state: Any, t: int) -> tuple[torch.Tensor, torch.Tensor, Any]:
        h, c = self.cell(self.embedding(token), state)
        logits = self.policy_head(h).view(-1, len(self.sizes), self.width)[:, t]
        return logits, self.value_head(h)[:, t], (h, c)

    def forward(self, actions: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch = actions.shape[0]
        token = torch.zeros(batch, dtype=torch.long)
        state = None
        log_probs, entropies, values = [], [], []
        for t in range(len(self.sizes)):
            logits, value, state = self._step(token, state, t)
            dist = torch.distributions.Categorical(logits=logits.masked_fill(~masks[:, t], float("-inf")))
            log_probs.append(dist.log_prob(actions[:, t]))
            entropies.append(dist.entropy())
            values.append(value)
            token = actions[:, t] + 1 + self.offsets[t]
        return torch.stack(log_probs, 1), torch.stack(entropies, 1), torch.stack(values, 1)

    @torch.no_grad()
    def sample(self, steps: DecisionSteps, generator: torch.Generator) -> list[int]:
        actions: list[int] = []
        token = torch.zeros(1, dtype=torch.long)
        state = None
        for t in range(len(self.sizes)):
            logits, _, state = self._step(token, state, t)
            partial = torch.tensor([actions + [0] * (len(self.sizes) - t)])
            allowed = steps.masks(partial)[0, t]
            probs = torch.softmax(logits[0].masked_fill(~allowed, float("-inf")), dim=0)
            action = int(torch.multinomial(probs, 1, generator=generator))
            actions.append(action)
            token = torch.tensor([action + 1 + self.offsets[t]])
        return actions
