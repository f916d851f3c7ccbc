"""What the store keeps per trial stays small and flat as an experiment grows.

- The evaluator is stored once per experiment (in its setup), not once per model: a module-level
  table the evaluator names is not copied into every model's row.
- The strategy's state is saved incrementally (its skeleton when it changes, the new entries of each
  ``AppendLog``), reassembled exactly by a resume, and never torn by a kill; v1 stores still open.
"""

from __future__ import annotations

import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from support import reaped, wait_while_running
from torch import nn

import nasflow
from nasflow.evaluator import FunctionalEvaluator
from nasflow.experiment import ExperimentStore, NasExperiment, NasExperimentConfig
from nasflow.experiment.store import SCHEMA_VERSION
from nasflow.experiment.strategy_state import LogMarker, StrategyStateSaver, join_state, split_state
from nasflow.nn import ModelSpace, MutableLinear
from nasflow.strategy import TPE, AppendLog, Chain, Deduplication, MedianStop, Random

optuna.logging.set_verbosity(optuna.logging.WARNING)


class Widths(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.fc = MutableLinear(2, nasflow.choice("width", list(range(1, 41))))

    def forward(self, x):  # noqa: ANN001, ANN201
        return self.fc(x)


def curve(model) -> None:  # noqa: ANN001
    width = model.fc.out_features
    for step in range(3):
        nasflow.report_intermediate_result(width / 40 + step / 10)
    nasflow.report_final_result(width / 40)


def log_rows(db: Path) -> dict[str, list[int]]:
    """The strategy log's sequence numbers by path, read with plain SQL."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT path, seq FROM strategy_log ORDER BY path, seq").fetchall()
    conn.close()
    out: dict[str, list[int]] = {}
    for path, seq in rows:
        out.setdefault(path, []).append(seq)
    return out


# ----- the evaluator, once

TRIALS = 6
EVALUATOR_SOURCE = '''
import numpy as np
import nasflow

TABLE = np.random.default_rng(17).random((4096, 2))  # a dataset defined in the user's script


def evaluate(model):
    nasflow.report_final_result(float(TABLE[model.fc.out_features, 0]))
'''


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


# ----- splitting a state ------------------------------------------------------------------------


def test_split_then_join_gives_the_state_back() -> None:
    state = {"seed": 3, "history": AppendLog([{"a": 1}, {"b": 2}]),
             "middlewares": [{"completed": AppendLog([[0.1, 0.2]])}, {"rng": (3, (1, 2), None)}],
             "plain": [1, [2, 3]], 7: AppendLog()}
    skeleton, logs = split_state(state)
    assert skeleton["history"] == LogMarker('["history"]') and skeleton["middlewares"][0]["completed"] == LogMarker(
        '["middlewares", 0, "completed"]') and skeleton[7] == LogMarker("[7]")
    assert skeleton["plain"] == [1, [2, 3]] and skeleton["middlewares"][1] == {"rng": (3, (1, 2), None)}
    joined = join_state(pickle.loads(pickle.dumps(skeleton)), {k: list(v) for k, v in logs.items()})
    assert joined == state and type(joined["history"]) is AppendLog and type(joined[7]) is AppendLog


def test_the_saver_appends_only_new_entries_in_one_transaction(tmp_path: Path) -> None:
    store = ExperimentStore.create(tmp_path / "e", "e", "e", {})
    history: list[dict[str, Any]] = []
    saver = StrategyStateSaver(store)
    for i in range(30):
        history.append({"params": {"width": i}, "state": "COMPLETE", "value": i / 30})
        saver.save(lambda: {"seed": 5, "history": AppendLog(history)})
    skeleton = store.load_strategy_state()
    assert skeleton is not None and len(skeleton) < 200  # the seed and a marker, not 30 records
    assert log_rows(store.path) == {'["history"]': list(range(30))}

    resumed = StrategyStateSaver(store)
    assert resumed.load() == {"seed": 5, "history": history}
    resumed.save(lambda: {"seed": 5, "history": AppendLog(history[:4])})  # a broken promise: stored afresh
    assert log_rows(store.path) == {'["history"]': list(range(4))}
    resumed.save(lambda: {"seed": 6})  # the log is gone from the state: its entries too
    assert log_rows(store.path) == {} and StrategyStateSaver(store).load() == {"seed": 6}
    store.close()


def test_entries_of_a_batch_that_failed_are_saved_again(tmp_path: Path) -> None:
    """A save inside a batch is stored only if the batch commits: the saver counts entries as saved
    after the commit, so those a failed batch (a full disk, a crash in its body) rolled back are
    written by the next save, not lost."""
    store = ExperimentStore.create(tmp_path / "e", "e", "e", {})
    history = AppendLog([1])
    saver = StrategyStateSaver(store)
    saver.save(lambda: {"history": history})
    history.append(2)
    with pytest.raises(RuntimeError), store.batch():
        saver.save(lambda: {"history": history})
        raise RuntimeError("a later write of the batch failed")
    history.append(3)
    with store.batch():  # two saves in one batch: the second writes the first's entries again
        saver.save(lambda: {"history": history})
        history.append(4)
        saver.save(lambda: {"history": history})
    assert StrategyStateSaver(store).load() == {"history": [1, 2, 3, 4]}
    store.close()


# ----- experiments ------------------------------------------------------------------------------

STRATEGIES: dict[str, Callable[[], Any]] = {
    "tpe": lambda: TPE(seed=1, n_startup_trials=4),
    "chain": lambda: Chain(TPE(seed=2, n_startup_trials=4, dedup=False), Deduplication("replace", seed=1),
                           MedianStop(warmup=2)),
    "random": lambda: Random(seed=4),
}


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_the_state_after_resume_is_the_state_before(tmp_path: Path, name: str) -> None:
    config = NasExperimentConfig("sequential", "simplified", max_trial_number=10,
                                 experiment_working_directory=str(tmp_path), progress=False)
    experiment = NasExperiment(Widths(), FunctionalEvaluator(curve), STRATEGIES[name](), config, id="state")
    experiment.run()
    before = experiment.strategy.state_dict()
    experiment._require_store().close()

    _, logs = split_state(before)
    assert logs and all(log for log in logs.values())  # the growing lists are AppendLogs, stored as rows
    assert {path: len(seqs) for path, seqs in log_rows(tmp_path / "state" / "nasflow.db").items()} == {
        path: len(log) for path, log in logs.items()}
    with ExperimentStore.open(tmp_path / "state", read_only=True) as store:
        skeleton = store.load_strategy_state()
    assert skeleton is not None and not any(pickle.dumps(log[0]) in skeleton for log in logs.values())

    resumed = NasExperiment.resume("state", experiment_working_directory=str(tmp_path))
    assert resumed.strategy.state_dict() == before
    resumed._require_store().close()


# ----- a version-1 store --------------------------------------------------------------------------


def make_v1_store(tmp_path: Path) -> Path:
    """A store as nasflow 1 wrote it: no strategy_log table, the whole state in one blob."""
    store = ExperimentStore.create(tmp_path / "old", "old", "old", {})
    store.close()
    with sqlite3.connect(store.path) as conn:
        conn.execute("DROP TABLE strategy_log")
        conn.execute("INSERT INTO strategy_state VALUES (1, ?, 0)", (pickle.dumps({"history": [1, 2]}),))
        conn.execute("PRAGMA user_version = 1")
    conn.close()
    return store.path


def test_a_version_1_store_reads_as_it_is_and_is_migrated_when_opened_for_writing(tmp_path: Path) -> None:
    db = make_v1_store(tmp_path)
    before = db.read_bytes()
    with ExperimentStore.open(db, read_only=True) as reader:
        assert reader.load_strategy_log() == {} and pickle.loads(reader.load_strategy_state()) == {"history": [1, 2]}
    assert db.read_bytes() == before

    with ExperimentStore.open(db) as writer:
        saver = StrategyStateSaver(writer)
        assert saver.load() == {"history": [1, 2]}
        saver.save(lambda: {"history": AppendLog([1, 2, 3])})
        assert StrategyStateSaver(writer).load() == {"history": [1, 2, 3]}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    conn.close()


# ----- kill -9 ------------------------------------------------------------------------------------

KILLED = textwrap.dedent('''
    import sys

    import optuna

    import nasflow
    from nasflow.evaluator import FunctionalEvaluator
    from nasflow.experiment import NasExperiment, NasExperimentConfig
    from nasflow.nn import ModelSpace, MutableLinear
    from nasflow.strategy import TPE, Chain, MedianStop

    optuna.logging.set_verbosity(optuna.logging.WARNING)


    class Space(ModelSpace):
        def __init__(self):
            super().__init__()
            self.fc = MutableLinear(2, nasflow.choice("width", list(range(1, 201))))

        def forward(self, x):
            return self.fc(x)


    def evaluate(model):
        width = model.fc.out_features
        nasflow.report_intermediate_result(width / 200)
        nasflow.report_final_result(width / 200)


    if __name__ == "__main__":
        config = NasExperimentConfig("sequential", "simplified", max_trial_number=int(sys.argv[2]),
                                     experiment_working_directory=sys.argv[1], progress=False)
        strategy = Chain(TPE(seed=9, n_startup_trials=5), MedianStop(warmup=3))
        NasExperiment(Space(), FunctionalEvaluator(evaluate), strategy, config, id="killed").run()
''')
KILLED_TRIALS = 60


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGKILL")
def test_kill_9_while_saving_then_resume(tmp_path: Path) -> None:
    script, workdir = tmp_path / "search.py", tmp_path / "exps"
    script.write_text(KILLED)
    db = workdir / "killed" / "nasflow.db"

    def saving() -> bool:
        try:
            return db.exists() and sum(len(s) for s in log_rows(db).values()) >= 15
        except sqlite3.Error:  # not created yet
            return False

    with reaped(subprocess.Popen([sys.executable, str(script), str(workdir), str(KILLED_TRIALS)],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)) as process:
        # Trials end every few milliseconds, each saving the state: the kill lands among saves.
        wait_while_running(process, saving, "the experiment to get going", interval=0.005)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    assert process.returncode == -signal.SIGKILL
    with ExperimentStore.open(db, read_only=True) as store:
        assert store.experiment().status == "running" and store.count_models() < KILLED_TRIALS
    for seqs in log_rows(db).values():
        assert seqs == list(range(len(seqs)))  # whole: no entry missing

    resumed = NasExperiment.resume("killed", experiment_working_directory=str(workdir))
    state = resumed.strategy.state_dict()
    resumed._require_store().close()
    with ExperimentStore.open(db, read_only=True) as store:
        records = store.models()
    assert len(records) == KILLED_TRIALS and all(r.status in ("trained", "interrupted") for r in records)
    told = [record for record in state["strategy"]["history"] if record.get("ran")]
    assert len(told) == KILLED_TRIALS  # every model ended once in TPE's history, before or after the kill
