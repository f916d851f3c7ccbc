"""Training services: where trials run (local worker pool; Ray and remote machines)."""

from .base import TrainingService, TrialEndStatus, TrialEvent, TrialSpec

__all__ = ["TrainingService", "TrialSpec", "TrialEvent", "TrialEndStatus"]
