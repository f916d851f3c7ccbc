"""Strategy middlewares: engine wrappers between a strategy and its engine, chained by ``Chain``."""

from .base import StrategyMiddleware
from .chain import Chain
from .dedup import Deduplication
from .failure import FailureHandler
from .filter import Filter
from .median_stop import MedianStop

__all__ = ["Chain", "StrategyMiddleware", "Deduplication", "FailureHandler", "Filter", "MedianStop"]
