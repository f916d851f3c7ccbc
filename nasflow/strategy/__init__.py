"""Strategies: which models to try next."""

from .base import Strategy
from .evolution import RegularizedEvolution
from .grid import GridSearch
from .middleware import Chain, Deduplication, FailureHandler, Filter, MedianStop, StrategyMiddleware
from .multi_fidelity import ASHA, Hyperband, SuccessiveHalving
from .random import Random
from .rl import PolicyBasedRL
from .tpe import TPE

__all__ = [
    "Strategy", "Random", "GridSearch", "RegularizedEvolution", "TPE", "PolicyBasedRL",
    "SuccessiveHalving", "Hyperband", "ASHA",
    "Chain", "StrategyMiddleware", "Deduplication", "FailureHandler", "Filter", "MedianStop",
]
