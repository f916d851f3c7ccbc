"""nasflow: neural architecture search on PyTorch."""

from nasflow.mutable import choice, loguniform, normal, qloguniform, qnormal, quniform, uniform
from nasflow.runtime import report_final_result, report_intermediate_result, trial_budget

__version__ = "0.1.0"

__all__ = [
    "choice", "uniform", "quniform", "loguniform", "qloguniform", "normal", "qnormal",
    "report_intermediate_result", "report_final_result", "trial_budget",
]
