"""``Budget``: how many trials and how much time an engine may still spend, across restarts."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["Budget"]


class Budget:
    """Counts trials (a retried model's runs each count) and wall time against optional limits.

    ``state_dict`` carries both counts over a restart, so a resumed experiment counts its old trials.
    """

    def __init__(self, max_trials: int | None = None, max_duration: float | None = None) -> None:
        self.max_trials, self.max_duration = max_trials, max_duration
        self.trials = 0
        self._trials_before, self._elapsed_before = 0, 0.0
        self._started_at = time.monotonic()

    def count_trial(self) -> None:
        self.trials += 1

    @property
    def total_trials(self) -> int:
        return self._trials_before + self.trials

    def elapsed(self) -> float:
        return self._elapsed_before + time.monotonic() - self._started_at

    def duration_spent(self) -> bool:
        return self.max_duration is not None and self.elapsed() >= self.max_duration

    def available(self) -> bool:
        if self.duration_spent():
            return False
        return self.max_trials is None or self.total_trials < self.max_trials

    def state_dict(self) -> dict[str, Any]:
        return {"model_count": self.total_trials, "elapsed": self.elapsed()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._elapsed_before = float(state.get("elapsed", 0.0))
        self._trials_before = int(state.get("model_count", 0))
        self._started_at = time.monotonic()
