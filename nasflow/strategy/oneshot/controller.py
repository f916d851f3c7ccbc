"""ENAS's controller: an LSTM that emits one decision per label and learns by REINFORCE.

Decisions follow ``space.simplify()``'s order; each is a softmax over the label's values (logits
``tanh_constant * tanh(logits / temperature)``, as in ENAS), or, for an input choice of any number of
inputs, one Bernoulli per candidate (a choice of one input is a softmax too). The embedding of each
decision is the next step's input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nasflow.mutable import Categorical, CategoricalMultiple, LabeledMutable, Sample

from .architecture import value_index

__all__ = ["ReinforceController"]


class ReinforceController(nn.Module):
    """``controller(generator)`` -> ``(sample, log_prob, entropy)``; ``given=`` scores a known sample,
    ``greedy=True`` takes the most likely decisions (the export)."""

    def __init__(self, mutables: dict[str, LabeledMutable], lstm_size: int = 64, lstm_num_layers: int = 1,
                 tanh_constant: float | None = 1.5, temperature: float | None = None) -> None:
        super().__init__()
        self.mutables = {label: m for label, m in mutables.items() if isinstance(m, (Categorical, CategoricalMultiple))}
        if not self.mutables:
            raise ValueError("The space has no categorical choice for the controller to make.")
        self.tanh_constant, self.temperature = tanh_constant, temperature
        self.lstm = nn.LSTM(lstm_size, lstm_size, lstm_num_layers)
        self.start = nn.Parameter(torch.empty(1, 1, lstm_size).uniform_(-0.1, 0.1))
        sizes = [len(m.values) for m in self.mutables.values()]
        self.heads = nn.ModuleList([nn.Linear(lstm_size, size, bias=False) for size in sizes])
        self.embeddings = nn.ModuleList([nn.Embedding(size, lstm_size) for size in sizes])

    def _logits(self, head: nn.Module, output: Tensor) -> Tensor:
        logits = head(output.view(1, -1)).view(-1)
        if self.temperature is not None:
            logits = logits / self.temperature
        if self.tanh_constant is not None:
            logits = self.tanh_constant * torch.tanh(logits)
        return logits

    def forward(self, generator: torch.Generator | None = None, given: Sample | None = None,
                greedy: bool = False) -> tuple[Sample, Tensor, Tensor]:
        device = self.start.device
        inputs, hidden = self.start, None
        sample: Sample = {}
        log_prob = torch.zeros((), device=device)
        entropy = torch.zeros((), device=device)
        for (label, mutable), head, embedding in zip(self.mutables.items(), self.heads, self.embeddings, strict=True):
            output, hidden = self.lstm(inputs, hidden)
            logits = self._logits(head, output)
            if isinstance(mutable, CategoricalMultiple) and mutable.n_chosen is None:
                probs = torch.sigmoid(logits)
                if given is not None:
                    mask = torch.tensor([float(v in given[label]) for v in mutable.values], device=device)
                elif greedy:
                    mask = (probs > 0.5).float()
                else:
                    mask = torch.bernoulli(probs.detach().cpu(), generator=generator).to(device)
                log_prob = log_prob + (mask * F.logsigmoid(logits) + (1 - mask) * F.logsigmoid(-logits)).sum()
                entropy = entropy - (probs * F.logsigmoid(logits) + (1 - probs) * F.logsigmoid(-logits)).sum()
                chosen = [i for i, m in enumerate(mask.tolist()) if m > 0.5]
                sample[label] = [mutable.values[i] for i in chosen]
                embedded = embedding.weight[chosen].mean(0) if chosen else torch.zeros_like(embedding.weight[0])
            else:
                log_probs = F.log_softmax(logits, dim=-1)
                if given is not None:
                    value = given[label][0] if isinstance(given[label], (list, tuple)) else given[label]
                    index = value_index(mutable, value)  # type: ignore[arg-type]
                elif greedy:
                    index = int(torch.argmax(logits))
                else:
                    index = int(torch.multinomial(log_probs.detach().exp().cpu(), 1, generator=generator))
                log_prob = log_prob + log_probs[index]
                entropy = entropy - (log_probs.exp() * log_probs).sum()
                value = mutable.values[index]
                sample[label] = [value] if isinstance(mutable, CategoricalMultiple) else value  # (n_chosen=1)
                embedded = embedding.weight[index]
            inputs = embedded.view(1, 1, -1)
        return sample, log_prob, entropy
