"""Errors raised when a sample does not fit a search space."""

from __future__ import annotations

__all__ = ["SampleValidationError", "SampleMissingError", "ConstraintViolation"]


class SampleValidationError(ValueError):
    """A sample does not belong to a space; the message names the label and what was expected."""

    def __init__(self, msg: str, paths: list[str] | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.paths: list[str] = list(paths or [])

    def __str__(self) -> str:
        where = " -> ".join(self.paths)
        return f"{self.msg} (at {where})" if where else self.msg


class SampleMissingError(SampleValidationError):
    """The sample has no value for a label the space needs."""

    def __init__(self, label: str, keys: list[str] | None = None) -> None:
        known = ", ".join(repr(k) for k in (keys or [])) or "nothing"
        super().__init__(
            f"Label {label!r} is missing from the sample (it has {known}). "
            f"Add a value for {label!r}, e.g. from space.simplify()[{label!r}].default()."
        )
        self.label = label


class ConstraintViolation(SampleValidationError):
    """The sample breaks an ExpressionConstraint; samplers catch this and draw again."""
