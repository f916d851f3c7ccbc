"""One-shot NAS on the raw format: a supernet trained once, weights shared by every architecture.

``DARTS``, ``GumbelDARTS``, ``Proxyless``, ``RandomOneShot`` (SPOS) and ``ENAS`` (also exported by
``nasflow.strategy``), the supernet modules they build, and the cost tables for hardware-aware search.
Lightning is imported on first use of a strategy's training module, not here.
"""

from .architecture import Architecture, UnsupportedChoiceError
from .mixed import MixedInput, MixedLayer, MixedRepeat, SupernetModule
from .mixed_cell import EdgeCell, MixedCell
from .mixed_op import MixedOperation
from .profiler import (
    CostTable,
    ExpectationProfilerPenalty,
    ProfilerFilter,
    ProfilerPenalty,
    RangeProfilerFilter,
    SampleProfilerPenalty,
)
from .strategy import DARTS, ENAS, GumbelDARTS, OneShotStrategy, Proxyless, RandomOneShot
from .supernet import MutationHook, Support, build_supernet, is_supernet

__all__ = [
    "OneShotStrategy", "DARTS", "GumbelDARTS", "Proxyless", "RandomOneShot", "ENAS",
    "Architecture", "SupernetModule", "MixedLayer", "MixedInput", "MixedRepeat", "MixedOperation", "MixedCell",
    "EdgeCell",
    "UnsupportedChoiceError", "Support", "MutationHook", "build_supernet", "is_supernet",
    "CostTable", "ProfilerPenalty", "ExpectationProfilerPenalty", "SampleProfilerPenalty", "ProfilerFilter",
    "RangeProfilerFilter",
]
