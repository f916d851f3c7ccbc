"""Training services: where trials run (local worker pool; Ray and remote machines)."""

from .base import TrainingService, TrialEndStatus, TrialEvent, TrialSpec
from .local import LocalTrainingService
from .payload import run_payload

__all__ = ["TrainingService", "TrialSpec", "TrialEvent", "TrialEndStatus", "LocalTrainingService", "run_payload"]
