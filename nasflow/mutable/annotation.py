"""NNI's ``nni.mutable.annotation`` module path: annotations and constraints."""

from .constraint import Constraint, ExpressionConstraint, MutableAnnotation

__all__ = ["MutableAnnotation", "Constraint", "ExpressionConstraint"]
