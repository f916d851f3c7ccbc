"""The trial side: how an evaluator reports metrics, wherever the trial runs."""

from .budget import budget_scope, trial_budget
from .reporting import (
    MetricValue,
    TrialContext,
    clean_exit,
    current_trial,
    normalize_metric,
    report_final_result,
    report_intermediate_result,
    trial_context,
)

__all__ = [
    "MetricValue", "TrialContext", "clean_exit", "current_trial", "normalize_metric", "trial_context",
    "report_intermediate_result", "report_final_result", "trial_budget", "budget_scope",
]
