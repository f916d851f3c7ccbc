"""The one way every training service runs a trial's payload, so trials behave the same wherever they run."""

from __future__ import annotations

import cloudpickle

from nasflow.runtime.reporting import Emit, clean_exit, trial_context

__all__ = ["run_payload"]


def run_payload(payload: bytes, emit: Emit) -> None:
    """Unpickle ``payload`` (``cloudpickle.dumps`` of a zero-argument callable) and call it.

    The call runs inside ``trial_context(emit)``, so ``nasflow.runtime.report_*`` calls made by the
    trial reach ``emit(kind, value)``. ``sys.exit(0)`` is a normal end; other exceptions propagate:
    the worker turns them into the trial's ``end`` event.
    """
    fn = cloudpickle.loads(payload)
    if not callable(fn):
        raise TypeError(f"A trial payload must unpickle to a zero-argument callable, got {type(fn).__name__}.")
    with trial_context(emit):
        try:
            fn()
        except SystemExit as err:
            if not clean_exit(err):
                raise
