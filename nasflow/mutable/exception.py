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
        where = " -> ".join(str(p) for p in self.paths)
        return f"{self.msg} (at {where})" if where else self.msg


class SampleMissingError(SampleValidationError):
    """The sample has no value for a label the space needs."""

    def __init__(self, label_or_msg: str, keys: list[str] | None = None) -> None:
        if keys is None:  # NNI's second form: a ready message
            super().__init__(label_or_msg)
            self.label = None
            return
        super().__init__(
            f"Label {label_or_msg} is missing from sample. Existing keys are: {list(keys)}. The value of "
            f"{label_or_msg!r} is missing: add one, e.g. space.simplify()[{label_or_msg!r}].default()."
        )
        self.label = label_or_msg


class ConstraintViolation(SampleValidationError):
    """The sample breaks an ExpressionConstraint; samplers catch this and draw again."""
