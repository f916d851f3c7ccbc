"""Search-space primitives (no torch): choices, numbers, expressions, constraints, samples."""

from .base import MISSING, LabeledMutable, Mutable, Sample, dedup_labeled_mutables, mutable_equal
from .constraint import Constraint, ExpressionConstraint, MutableAnnotation
from .container import MutableDict, MutableList
from .exception import ConstraintViolation, SampleMissingError, SampleValidationError
from .expression import MutableExpression
from .frozen import ensure_frozen, frozen_context, frozen_factory, register_ensure_frozen_hook
from .labels import auto_label, label, label_scope, reset_uid, uid
from .shortcut import (
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
from .symbol import Categorical, CategoricalMultiple, MutableSymbol, Numerical

__all__ = [
    "MISSING", "Mutable", "LabeledMutable", "Sample", "MutableSymbol", "MutableExpression", "Categorical",
    "CategoricalMultiple", "Numerical", "MutableList", "MutableDict", "MutableAnnotation", "Constraint",
    "ExpressionConstraint", "SampleValidationError", "SampleMissingError", "ConstraintViolation", "label_scope",
    "auto_label", "label", "uid", "reset_uid", "frozen_context", "frozen_factory", "ensure_frozen",
    "register_ensure_frozen_hook", "dedup_labeled_mutables", "mutable_equal",
    "choice", "uniform", "quniform", "loguniform", "qloguniform", "normal", "qnormal", "lognormal", "qlognormal",
    "randint",
]
