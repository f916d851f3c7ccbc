"""The evaluator is stored once per experiment (in its setup), not once per model: a module-level
table the evaluator names must not be copied into every model's row."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
from torch import nn

import nasflow
from nasflow.evaluator import FunctionalEvaluator
from nasflow.experiment import ExperimentStore, NasExperiment, NasExperimentConfig
from nasflow.nn import ModelSpace, MutableLinear
from nasflow.strategy import Random

TRIALS = 6
EVALUATOR_SOURCE = '''
import numpy as np
import nasflow

TABLE = np.random.default_rng(17).random((4096, 2))  # a dataset defined in the user's script


def evaluate(model):
    nasflow.report_final_result(float(TABLE[model.fc.out_features, 0]))
'''


class Widths(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.fc = MutableLinear(2, nasflow.choice("width", list(range(1, 41))))

    def forward(self, x):  # noqa: ANN001, ANN201
        return self.fc(x)


def script_module() -> types.ModuleType:
    """The evaluator's module as a user's script is: not importable, so it is pickled by value, table
    included (what cloudpickle does for ``__main__``)."""
    module = types.ModuleType("user_script_17")
    exec(compile(EVALUATOR_SOURCE, "user_script_17.py", "exec"), module.__dict__)  # noqa: S102
    return module


def signatures(table: np.ndarray) -> list[bytes]:
    """Short slices from the table's second half (raw and as the setup's hex text): a copy of the table
    shows each of them, whichever pages SQLite splits it across, while pages rewritten by later
    commits (a b-tree's leaf holds only the start of a long value) hold none of them."""
    data = table.tobytes()
    raw = [data[offset:offset + 24] for offset in range(len(data) // 2, len(data) - 24, len(data) // 16)]
    return raw + [piece.hex().encode() for piece in raw]


def copies(files: list[Path], table: np.ndarray) -> int:
    """How many copies of the table the files hold: the most found of any one signature."""
    contents = [file.read_bytes() for file in files if file.exists()]
    return max(sum(content.count(sig) for content in contents) for sig in signatures(table))


def test_a_module_level_table_named_by_the_evaluator_is_stored_once(tmp_path: Path) -> None:
    module = script_module()
    config = NasExperimentConfig("sequential", "simplified", max_trial_number=TRIALS,
                                 experiment_working_directory=str(tmp_path), progress=False)
    experiment = NasExperiment(Widths(), FunctionalEvaluator(module.evaluate), Random(seed=3), config, id="once")
    experiment.run()
    best = experiment.export_top_models(1)[0]
    experiment._require_store().close()

    files = [tmp_path / "once" / f"nasflow.db{suffix}" for suffix in ("", "-wal")]
    with ExperimentStore.open(tmp_path / "once", read_only=True) as store:
        records = store.models()
    assert copies(files, module.TABLE) == 1  # the setup's, however many models
    assert len(records) == TRIALS and all(r.status == "trained" and r.payload is None for r in records)

    # models are rebuilt from their samples and the setup: by a resume, and by a trusted view
    resumed = NasExperiment.resume("once", experiment_working_directory=str(tmp_path))
    assert sorted(m.model_id for m in resumed.list_models()) == list(range(TRIALS))
    resumed._require_store().close()
    view = NasExperiment.view("once", experiment_working_directory=str(tmp_path), trusted=True)
    built = view.export_top_models(1, formatter="instance")[0]
    assert isinstance(built, nn.Module) and built.fc.out_features == best["width"]
    view._require_store().close()
