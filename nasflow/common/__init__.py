"""NNI's ``nni.common`` helpers that ported code calls: tracing and the framework switch.

nasflow needs no tracing (a model space records its constructor call itself, and evaluators record
their arguments), so ``trace`` hands back what it is given; it exists so NNI code runs unchanged.
"""

from .framework import get_default_framework, set_default_framework
from .serializer import dump, is_traceable, load, trace

__all__ = ["trace", "is_traceable", "dump", "load", "get_default_framework", "set_default_framework"]
