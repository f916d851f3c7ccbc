"""Strategies: which models to try next."""

from .base import Strategy
from .random import Random

__all__ = ["Strategy", "Random"]
