"""Search-space primitives (no torch): choices, numbers, expressions, constraints, samples."""

from .base import MISSING, LabeledMutable, Mutable, Sample, dedup_labeled_mutables
from .constraint import Constraint, ExpressionConstraint
from .container import MutableDict, MutableList
from .exception import ConstraintViolation, SampleMissingError, SampleValidationError
from .expression import MutableExpression
from .frozen import ensure_frozen, frozen_context, register_ensure_frozen_hook
from .labels import auto_label, label, label_scope, reset_uid, uid
from .shortcut import choice, loguniform, normal, qloguniform, qnormal, quniform, uniform
from .symbol import Categorical, CategoricalMultiple, MutableSymbol, Numerical

__all__ = [
    "MISSING", "dedup_labeled_mutables", "Mutable", "LabeledMutable", "Sample", "MutableSymbol", "Categorical",
    "CategoricalMultiple",
    "Numerical", "MutableExpression", "MutableList", "MutableDict", "Constraint", "ExpressionConstraint",
    "SampleValidationError", "SampleMissingError", "ConstraintViolation", "label_scope", "auto_label", "label",
    "uid", "reset_uid",
    "frozen_context", "ensure_frozen", "register_ensure_frozen_hook",
    "choice", "uniform", "quniform", "loguniform", "qloguniform", "normal", "qnormal",
]
