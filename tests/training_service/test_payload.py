"""``run_payload``: the one way every service (local workers, Ray, SSH machines) runs a trial."""

from __future__ import annotations

import sys

import cloudpickle
import pytest

from nasflow.training_service import run_payload


def test_sys_exit_0_ends_a_trial_normally_and_any_other_exit_fails_it() -> None:
    reported: list[tuple[str, object]] = []

    def report_then_exit(code: int | None) -> None:
        import nasflow

        nasflow.report_final_result(0.5)
        sys.exit(code)

    for code in (0, None):
        run_payload(cloudpickle.dumps(lambda code=code: report_then_exit(code)), lambda *e: reported.append(e))
    assert reported == [("final", 0.5), ("final", 0.5)]
    with pytest.raises(SystemExit) as info:
        run_payload(cloudpickle.dumps(lambda: report_then_exit(3)), lambda *e: None)
    assert info.value.code == 3
