"""nasflow: neural architecture search on PyTorch, with NNI 3.0's public names."""

from nasflow.common import dump, get_default_framework, is_traceable, load, set_default_framework, trace
from nasflow.mutable import (
    choice,
    lognormal,
    loguniform,
    normal,
    qlognormal,
    qloguniform,
    qnormal,
    quniform,
    randint,
    uniform,
)
from nasflow.runtime import report_final_result, report_intermediate_result, trial_budget

__version__ = "0.1.0"

__all__ = [
    "choice", "uniform", "quniform", "loguniform", "qloguniform", "normal", "qnormal", "lognormal", "qlognormal",
    "randint", "report_intermediate_result", "report_final_result", "trial_budget", "trace", "is_traceable", "dump",
    "load", "get_default_framework", "set_default_framework",
]
