"""Losing the Ray head node ends the experiment with ``RayClusterError`` and a failed status.

Ray's own calls to a lost head's GCS wait 60 s and then end the process ("Failed to connect to GCS
within 60 seconds"), leaving the store ``running``. The experiment runs in a subprocess (its own Ray
driver) on a two-node cluster this test starts; the test kills every process of the head node while
trials run there.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support import reaped, wait_while_running

ray = pytest.importorskip("ray", reason='Ray is optional: pip install "nasflow[ray]"')
from ray.cluster_utils import Cluster  # noqa: E402

from nasflow.experiment import ExperimentStore  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Ray cluster tests target Linux")

NODE_ARGS = {"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024}

SCRIPT = textwrap.dedent('''
    import sys
    import time

    import nasflow
    from nasflow.evaluator import FunctionalEvaluator
    from nasflow.experiment import NasExperiment, NasExperimentConfig
    from nasflow.nn import ModelSpace, MutableLinear
    from nasflow.strategy import GridSearch
    from nasflow.training_service.ray import RayTrainingService


    class Wide(ModelSpace):
        def __init__(self):
            super().__init__()
            self.fc = MutableLinear(2, nasflow.choice("width", list(range(1, 9))))

        def forward(self, x):
            return self.fc(x)


    def evaluate(model):
        nasflow.report_intermediate_result(0.5)
        time.sleep(600)  # until its node goes


    if __name__ == "__main__":
        address, workdir = sys.argv[1:3]
        service = RayTrainingService(address=address, trial_concurrency=3)
        config = NasExperimentConfig("ts", "simplified", service, trial_concurrency=3, max_trial_number=8,
                                     experiment_working_directory=workdir, progress=False)
        NasExperiment(Wide(), FunctionalEvaluator(evaluate), GridSearch(), config, id="headless").run()
''')


def running_trials(store_dir: Path) -> int:
    if not (store_dir / "nasflow.db").exists():
        return 0
    try:
        with ExperimentStore.open(store_dir, read_only=True) as store:
            return sum(r.status == "training" and bool(r.metrics.intermediates)
                       for r in store.models(include_payload=False))
    except Exception:  # being created
        return 0


def test_a_lost_head_is_a_cluster_error_and_the_experiment_is_recorded_failed(tmp_path: Path) -> None:
    if ray.is_initialized():
        pytest.skip("this process is already connected to Ray")
    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={**NODE_ARGS, "include_dashboard": False})
    try:
        cluster.add_node(**NODE_ARGS)
        cluster.wait_for_nodes()
        script, workdir = tmp_path / "search.py", tmp_path / "exps"
        script.write_text(SCRIPT)
        with reaped(subprocess.Popen([sys.executable, str(script), cluster.address, str(workdir)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)) as process:
            # Both nodes busy: trials run on the head too.
            wait_while_running(process, lambda: running_trials(workdir / "headless") >= 2, "the trials to start",
                               limit=240, interval=0.1)
            cluster.head_node.kill_all_processes(check_alive=False, allow_graceful=False)
            output = process.communicate(timeout=300)[0]  # a guard against a hang, not a speed bound
    finally:
        cluster.shutdown()
    assert process.returncode == 1, output
    assert "RayClusterError" in output and "Lost the Ray cluster" in output, output[-3000:]
    assert "within 60 seconds" not in output
    with ExperimentStore.open(workdir / "headless", read_only=True) as store:
        assert store.experiment().status == "failed"
        records = store.models(include_payload=False)
    assert all(r.status != "training" for r in records), [(r.status, r.error) for r in records]
