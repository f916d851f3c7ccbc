"""NNI's framework switch: nasflow is PyTorch only, so the default framework is always ``'pytorch'``."""

from __future__ import annotations

__all__ = ["get_default_framework", "set_default_framework"]

FRAMEWORK = "pytorch"


def get_default_framework() -> str:
    """Always ``'pytorch'``."""
    return FRAMEWORK


def set_default_framework(framework: str) -> None:
    """Accepts ``'pytorch'`` (a no-op); any other framework is refused."""
    if framework != FRAMEWORK:
        raise ValueError(f"nasflow supports PyTorch only, so the framework cannot be {framework!r} "
                         "(NNI's TensorFlow support is not ported).")
