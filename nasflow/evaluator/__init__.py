"""Evaluators: FunctionalEvaluator, and the Lightning-based Classification / Regression."""

from .base import Evaluator, FunctionalEvaluator, evaluate_model

__all__ = ["Evaluator", "FunctionalEvaluator", "evaluate_model"]
