"""Strategies: which models to try next."""

from .base import Strategy
from .evolution import RegularizedEvolution
from .grid import GridSearch
from .middleware import Chain, Deduplication, FailureHandler, Filter, MedianStop, StrategyMiddleware
from .random import Random
from .rl import PolicyBasedRL
from .tpe import TPE

__all__ = [
    "Strategy", "Random", "GridSearch", "RegularizedEvolution", "TPE", "PolicyBasedRL",
    "Chain", "StrategyMiddleware", "Deduplication", "FailureHandler", "Filter", "MedianStop",
]
