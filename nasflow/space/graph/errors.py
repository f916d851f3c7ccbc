"""Errors of the graph format."""

from __future__ import annotations

__all__ = ["GraphFormatError", "GraphConversionError", "UnknownOperationError"]


class GraphFormatError(ValueError):
    """Graph IR that is malformed, or a value that cannot be represented in it."""


class GraphConversionError(GraphFormatError):
    """A model space that cannot be converted; the message names the module path and the fix."""


class UnknownOperationError(GraphFormatError):
    """IR JSON names an operation type that nasflow does not know."""
