"""Strategies: which models to try next."""

from .append_log import AppendLog
from .base import Strategy
from .evolution import RegularizedEvolution
from .grid import GridSearch
from .middleware import Chain, Deduplication, FailureHandler, Filter, MedianStop, StrategyMiddleware
from .multi_fidelity import ASHA, Hyperband, SuccessiveHalving
from .oneshot import DARTS, ENAS, GumbelDARTS, OneShotStrategy, Proxyless, RandomOneShot
from .random import Random
from .rl import PolicyBasedRL
from .tpe import TPE

__all__ = [
    "Strategy", "AppendLog", "Random", "GridSearch", "RegularizedEvolution", "TPE", "PolicyBasedRL",
    "SuccessiveHalving", "Hyperband", "ASHA",
    "Chain", "StrategyMiddleware", "Deduplication", "FailureHandler", "Filter", "MedianStop",
    "OneShotStrategy", "DARTS", "GumbelDARTS", "Proxyless", "RandomOneShot", "ENAS",
]
