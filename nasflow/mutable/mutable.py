"""NNI's ``nni.mutable.mutable`` module path: the mutable classes and their equality helpers."""

from .base import MISSING, LabeledMutable, Mutable, Sample, dedup_labeled_mutables, mutable_equal
from .expression import MutableExpression
from .symbol import Categorical, CategoricalMultiple, MutableSymbol, Numerical

_mutable_equal = mutable_equal
_dedup_labeled_mutables = dedup_labeled_mutables

__all__ = ["Mutable", "LabeledMutable", "MutableSymbol", "MutableExpression", "Sample", "Categorical",
           "CategoricalMultiple", "Numerical", "MISSING"]
