"""The Ray training service on a real three-node Ray cluster on this machine.

``ray.cluster_utils.Cluster`` runs a head and two worker nodes (one CPU each, a custom resource per
node so placement can be seen); a node is killed mid-trial. Most tests share one driver connection
(so Ray reuses its worker processes); the experiment test makes and drops its own connection.
"""

from __future__ import annotations

import functools
import os
import pickle
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

ray = pytest.importorskip("ray", reason='Ray is optional: pip install "nasflow[ray]"')
from ray.cluster_utils import Cluster  # noqa: E402
from support import HANG_GUARD_S, alive, wait_for  # noqa: E402
from torch import nn  # noqa: E402

import nasflow  # noqa: E402
from nasflow.training_service import TrialEvent, TrialSpec  # noqa: E402
from nasflow.training_service.ray import RAY_INSTALL_HINT, RayClusterError, RayTrainingService  # noqa: E402

# Trial functions below travel by value, as if they were defined in a user's script.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Ray cluster tests target Linux")

NODE_ARGS = {"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024}


# ----- trials (run on the Ray nodes) ---------------------------------------------------------------


def stamped(seconds: float) -> None:
    """Report when it ran (one clock: every node is on this machine)."""
    start = time.time()
    time.sleep(seconds)
    nasflow.report_final_result({"default": 1.0, "start": start, "end": time.time(), "pid": os.getpid()})


def gated(gate: str, limit: float = 60.0) -> None:
    """Report, then wait until the test has seen the report (it creates ``gate``): proves streaming."""
    print(f"trial output from pid {os.getpid()}", flush=True)
    nasflow.report_intermediate_result(0.5)
    deadline = time.time() + limit
    while not os.path.exists(gate):
        if time.time() > deadline:
            raise TimeoutError("the intermediate result never reached the driver")
        time.sleep(0.05)
    nasflow.report_final_result(1.0)


def misbehave(mode: str) -> None:
    nasflow.report_intermediate_result(0.25)
    if mode == "raise":
        raise ValueError("trial raised on purpose")
    if mode == "exit":
        os._exit(3)
    time.sleep(120)


def quick() -> None:
    nasflow.report_final_result(1.0)


def payload(fn: Callable[..., Any], *args: Any) -> bytes:
    return cloudpickle.dumps(functools.partial(fn, *args))


# ----- helpers ---------------------------------------------------------------------------------------


def run_all(service: RayTrainingService, specs: list[TrialSpec], limit: float = 60.0,
            respect_capacity: bool = True) -> dict[str, list[TrialEvent]]:
    """Submit (while capacity allows, unless told otherwise), poll until every trial ended."""
    pending, events, ended = list(specs), defaultdict(list), set()
    deadline = time.monotonic() + limit
    while len(ended) < len(specs):
        assert time.monotonic() < deadline, f"trials did not end in {limit} s: {dict(events)}"
        while pending and (not respect_capacity or service.capacity() > 0):
            service.submit(pending.pop(0))
        for event in service.poll_events(0.2):
            events[event.trial_id].append(event)
            if event.kind == "end":
                ended.add(event.trial_id)
    return events




def wait_capacity(service: RayTrainingService, expected: int, limit: float = 15.0) -> None:
    """Ray's free-resource figures trail trials that just ended (of earlier tests) by a moment."""
    deadline = time.monotonic() + limit
    while service.capacity() != expected:
        assert time.monotonic() < deadline, f"capacity stayed {service.capacity()}, expected {expected}"
        time.sleep(0.1)


def end_of(events: list[TrialEvent]) -> TrialEvent:
    ends = [e for e in events if e.kind == "end"]
    assert len(ends) == 1, events
    assert events[-1] is ends[0], "the end event must come last"
    return ends[0]




def gone(pid: int, limit: float = 10.0) -> bool:
    """Whether ``pid`` exits within ``limit`` s (Ray kills a cancelled task's worker asynchronously)."""
    deadline = time.monotonic() + limit
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


# ----- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """Head + two workers, one CPU each; custom resources ``node_head``/``node_a``/``node_b``."""
    if ray.is_initialized():
        pytest.skip("this process is already connected to Ray")
    made = Cluster(initialize_head=True, head_node_args={**NODE_ARGS, "include_dashboard": False,
                                                         "resources": {"node_head": 1}})
    try:
        made.add_node(**NODE_ARGS, resources={"node_a": 1})
        made.add_node(**NODE_ARGS, resources={"node_b": 1})
        made.wait_for_nodes()
        yield made
    finally:
        if ray.is_initialized():
            ray.shutdown()
        made.shutdown()


@pytest.fixture(scope="module")
def driver(cluster: Cluster) -> Iterator[Cluster]:
    """One driver connection for the module, which services then share."""
    if not ray.is_initialized():
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    yield cluster


def node_ids() -> dict[str, str]:
    """Custom resource name -> Ray node id."""
    ids = {}
    for node in ray.nodes():
        for name in ("node_head", "node_a", "node_b"):
            if node["Alive"] and name in node["Resources"]:
                ids[name] = node["NodeID"]
    return ids


@pytest.fixture
def service(driver: Cluster, tmp_path: Path) -> Iterator[RayTrainingService]:
    made = RayTrainingService(address=driver.address, trial_concurrency=3, log_dir=tmp_path / "logs")
    made.start()
    yield made
    made.shutdown()


# ----- without a cluster -----------------------------------------------------------------------------


def test_nasflow_imports_without_ray_and_the_service_says_how_to_install() -> None:
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "import nasflow, nasflow.experiment, nasflow.training_service as ts\n"
        "config = ts.RemoteConfig([ts.RemoteMachineConfig('h', user='u')])\n"
        "try:\n    ts.RayTrainingService()\nexcept ImportError as err:\n    print('HINT', err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "HINT" in out.stdout and RAY_INSTALL_HINT in out.stdout


def test_a_service_in_a_config_copies_and_pickles_as_its_settings() -> None:
    import copy

    made = RayTrainingService("host:6379", trial_concurrency=4, resources={"x": 1})
    clone = pickle.loads(pickle.dumps(made))
    assert clone.address == "host:6379" and clone.trial_concurrency == 4 and clone.resources == {"x": 1}
    assert not clone.started and copy.deepcopy(made).to_dict() == made.to_dict()
    assert made.to_dict()["platform"] == "ray" and made.platform == "ray"
    with pytest.raises(ValueError, match="trial_concurrency"):
        RayTrainingService(trial_concurrency=0)


def test_gpu_requests_follow_sharing_and_trial_overrides() -> None:
    made = RayTrainingService(cpus_per_trial=2, gpus_per_trial=1, max_trials_per_gpu=4, resources={"fast": 1})
    assert made._request(None) == {"CPU": 2.0, "GPU": 0.25, "fast": 1.0}
    spec = TrialSpec("t", b"", resources={"CPU": 0.5, "fast": 0, "memory": 1e9})
    assert made._request(spec) == {"CPU": 0.5, "GPU": 0.25, "memory": 1e9}
    with pytest.raises(ValueError, match="cannot share"):
        made._request(TrialSpec("t", b"", gpu_number=2))


# ----- on the cluster ----------------------------------------------------------------------------------


def test_experiment_runs_on_the_cluster_and_leaves_it_running(cluster: Cluster, tmp_path: Path) -> None:
    from nasflow.evaluator import FunctionalEvaluator
    from nasflow.experiment import ExperimentStore, NasExperiment, NasExperimentConfig
    from nasflow.nn import ModelSpace, MutableLinear
    from nasflow.strategy import Random

    class Tiny(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.fc = MutableLinear(2, nasflow.choice("width", [1, 2, 3]))

        def forward(self, x: Any) -> Any:
            return self.fc(x)

    def evaluate(model: nn.Module) -> None:
        nasflow.report_intermediate_result(0.5)
        nasflow.report_final_result(float(model.fc.out_features))

    owned = not ray.is_initialized()
    service = RayTrainingService(address=cluster.address, trial_concurrency=2)
    config = NasExperimentConfig("ts", "simplified", service, max_trial_number=3, trial_concurrency=2,
                                 experiment_working_directory=str(tmp_path), progress=False)
    exp = NasExperiment(Tiny(), FunctionalEvaluator(evaluate), Random(dedup=True, seed=0), config)
    assert exp.run() is True
    with ExperimentStore.open(tmp_path / exp.id, read_only=True) as store:
        records = store.models(include_payload=False)
    assert sorted(r.metrics.final for r in records) == [1.0, 2.0, 3.0]
    assert all(r.status == "trained" and r.metrics.intermediates == [0.5] for r in records)
    if owned:  # joined by address: disconnected at the end, the cluster itself still runs
        assert not ray.is_initialized()
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    assert sum(n["Alive"] for n in ray.nodes()) == 3


LOCAL_SERVICE = """
import sys, ray
from nasflow.training_service.ray import RayTrainingService
service = RayTrainingService(trial_concurrency=1, log_dir=sys.argv[1])
service.start()
try:
    print(sorted(name for node in ray.nodes() if node["Alive"] for name in node["Resources"]
                 if name.startswith("node_")))
finally:
    service.shutdown()
"""


def test_a_local_service_starts_its_own_instance_beside_a_running_cluster(cluster: Cluster, tmp_path: Path) -> None:
    """``address=None`` means a Ray instance of the service's own, even where ``ray.init()`` would
    find and join another one (``RAY_ADDRESS``, or an instance recorded under /tmp/ray). In a process
    of its own: one process holds one Ray connection and its credentials."""
    result = subprocess.run([sys.executable, "-c", LOCAL_SERVICE, str(tmp_path / "logs")], capture_output=True,
                            text=True, env={**os.environ, "RAY_ADDRESS": cluster.address}, timeout=HANG_GUARD_S)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"  # none of the cluster's nodes
    assert all(node.remaining_processes_alive() for node in cluster.list_all_nodes())  # the cluster: untouched


@pytest.mark.parametrize("engine", ["ts", "cgo"])
def test_graph_format_and_cgo_experiments_complete_on_the_cluster(cluster: Cluster, engine: str,
                                                                   tmp_path: Path) -> None:
    """Graph-format models train on the cluster alone ('ts') and merged ('cgo'): merged trials are
    just trials to the Ray service, so CGO runs there as on the local one."""
    import torch
    from torch.utils.data import TensorDataset

    from nasflow.evaluator import Classification, DataLoader
    from nasflow.experiment import ExperimentStore, NasExperiment, NasExperimentConfig
    from nasflow.nn import LayerChoice, ModelSpace, MutableLinear
    from nasflow.strategy import GridSearch

    class Small(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.fc = MutableLinear(4, nasflow.choice("width", [4, 8]))
            self.act = LayerChoice([nn.ReLU(), nn.Tanh()], label="act")
            self.head = MutableLinear(nasflow.choice("width", [4, 8]), 2)

        def forward(self, x: Any) -> Any:
            return self.head(self.act(self.fc(x)))

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=generator)
    data = TensorDataset(x, (x[:, 0] > 0).long())
    evaluator = Classification(train_dataloaders=DataLoader(data, batch_size=16),
                               val_dataloaders=DataLoader(data, batch_size=64), max_epochs=1, num_classes=2)
    service = RayTrainingService(address=cluster.address, trial_concurrency=2)
    config = NasExperimentConfig(engine, "graph", service, max_trial_number=4, trial_concurrency=2,
                                 experiment_working_directory=str(tmp_path), progress=False)
    if engine == "cgo":
        config.max_concurrency_cgo = 2
        config.batch_waiting_time = 0
    exp = NasExperiment(Small(), evaluator, GridSearch(shuffle=False), config)
    assert exp.run() is True
    with ExperimentStore.open(tmp_path / exp.id, read_only=True) as store:
        records = store.models(include_payload=False)
    assert len(records) == 4 and all(r.status == "trained" and r.metrics.final is not None for r in records)
    trials = defaultdict(list)
    for record in records:
        trials[record.trial_id].append(record.model_id)
    assert sorted(len(group) for group in trials.values()) == ([2, 2] if engine == "cgo" else [1, 1, 1, 1])
    if not ray.is_initialized():
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)


def test_trials_spread_over_nodes_stream_metrics_and_logs(service: RayTrainingService, tmp_path: Path) -> None:
    ids = node_ids()
    wait_capacity(service, 3)  # three nodes with one CPU each
    gates = {f"g{i}": tmp_path / f"gate-{i}" for i in range(3)}
    for trial_id, gate in gates.items():
        service.submit(TrialSpec(trial_id, payload(gated, str(gate))))
    assert service.capacity() == 0
    events: dict[str, list[TrialEvent]] = defaultdict(list)
    deadline = time.monotonic() + 90
    while len([t for t in events if any(e.kind == "end" for e in events[t])]) < 3:
        assert time.monotonic() < deadline, dict(events)
        for event in service.poll_events(0.2):
            events[event.trial_id].append(event)
        # Every trial blocks after its intermediate until its gate opens, so these arrived while
        # they ran; all three at once also means three nodes, one CPU each.
        if all(any(e.kind == "intermediate" for e in events[t]) for t in gates):
            for gate in gates.values():
                gate.touch()
    for trial_id in gates:
        kinds = [e.kind for e in events[trial_id]]
        assert kinds == ["started", "intermediate", "final", "end"], kinds
        assert end_of(events[trial_id]).status == "succeeded"
    started = {t: events[t][0].value for t in gates}
    assert {s["node"] for s in started.values()} == set(ids.values())  # one trial per node
    assert all(isinstance(s["pid"], int) and s["node_ip"] for s in started.values())
    for trial_id, info in started.items():
        log = (tmp_path / "logs" / f"{trial_id}.log").read_text()
        assert f"trial output from pid {info['pid']}" in log


def test_trials_never_overlap_beyond_the_cpus_they_ask_for(driver: Cluster) -> None:
    made = RayTrainingService(address=driver.address, trial_concurrency=6, cpus_per_trial=1)
    with made:
        specs = [TrialSpec(f"s{i}", payload(stamped, 1.0)) for i in range(6)]
        events = run_all(made, specs, respect_capacity=False)  # Ray itself must queue the extra ones
    spans = [next(e.value for e in events[s.trial_id] if e.kind == "final") for s in specs]
    assert all(end_of(events[s.trial_id]).status == "succeeded" for s in specs)
    points = sorted([(s["start"], 1) for s in spans] + [(s["end"], -1) for s in spans], key=lambda p: (p[0], p[1]))
    running = peak = 0
    for _, step in points:
        running += step
        peak = max(peak, running)
    assert peak <= 3, spans


def test_custom_resources_pin_trials_to_nodes(service: RayTrainingService, driver: Cluster) -> None:
    ids = node_ids()
    specs = [TrialSpec("on-b", payload(quick), resources={"node_b": 1}),
             TrialSpec("on-head", payload(quick), resources={"node_head": 0.5})]
    events = run_all(service, specs)
    assert events["on-b"][0].value["node"] == ids["node_b"]
    assert events["on-head"][0].value["node"] == ids["node_head"]
    pinned = RayTrainingService(address=driver.address, resources={"node_a": 1})
    with pinned:
        wait_capacity(pinned, 1)
        events = run_all(pinned, [TrialSpec("on-a", payload(quick))])
    assert events["on-a"][0].value["node"] == ids["node_a"]
    with pytest.raises(ValueError, match="no node of the cluster has that much"):
        service.submit(TrialSpec("nowhere", payload(quick), resources={"TPU": 1}))


def test_trial_failures_cancel_and_timeout(service: RayTrainingService) -> None:
    specs = [TrialSpec("raise", payload(misbehave, "raise")), TrialSpec("exit", payload(misbehave, "exit")),
             TrialSpec("slow", payload(misbehave, "sleep"), timeout=1.0)]
    events = run_all(service, specs)
    raised = end_of(events["raise"])
    assert raised.status == "failed" and "ValueError: trial raised on purpose" in (raised.error or "")
    exited = end_of(events["exit"])
    assert exited.status == "failed" and "worker process" in (exited.error or ""), exited.error
    slow = end_of(events["slow"])
    assert slow.status == "timeout" and "timeout of 1.0 s" in (slow.error or "")
    assert gone(events["slow"][0].value["pid"])
    for trial_id in specs:  # the metric reported before dying is kept
        assert [e.value for e in events[trial_id.trial_id] if e.kind == "intermediate"] == [0.25]

    service.submit(TrialSpec("cancel-me", payload(misbehave, "sleep")))
    seen = wait_for(service, lambda e: e.kind == "intermediate", limit=60)
    pid = seen[0].value["pid"]
    service.cancel("cancel-me")
    ended = wait_for(service, lambda e: e.kind == "end", limit=30)
    assert ended[-1].status == "cancelled" and gone(pid)


def test_fresh_worker_per_trial_when_asked(driver: Cluster) -> None:
    made = RayTrainingService(address=driver.address, resources={"node_a": 1}, reuse_workers=False)
    with made:
        events = run_all(made, [TrialSpec("first", payload(quick))])
        events.update(run_all(made, [TrialSpec("second", payload(quick))]))
    assert events["first"][0].value["pid"] != events["second"][0].value["pid"]


def test_lost_collector_is_a_cluster_error_then_open_trials_end(driver: Cluster) -> None:
    made = RayTrainingService(address=driver.address)
    made.start()
    try:
        made.submit(TrialSpec("orphan", payload(misbehave, "sleep")))
        pid = wait_for(made, lambda e: e.kind == "intermediate", limit=60)[0].value["pid"]
        ray.kill(made._collector)  # what losing the head node looks like to the service
        with pytest.raises(RayClusterError, match="Lost the Ray cluster"):
            for _ in range(100):
                made.poll_events(0.2)
        ended = made.poll_events(0.1)  # raised once; now the engine can wind down
        assert [(e.trial_id, e.kind, e.status) for e in ended] == [("orphan", "end", "failed")]
        assert "Lost the Ray cluster" in (ended[0].error or "")
        with pytest.raises(RayClusterError):
            made.submit(TrialSpec("late", payload(quick)))
        with pytest.raises(RayClusterError):
            made.capacity()
    finally:
        made.shutdown()
    assert gone(pid)  # shutdown still stopped what ran on the (here still alive) cluster


def test_a_node_dying_fails_its_trial_and_the_rest_go_on(driver: Cluster, service: RayTrainingService,
                                                         tmp_path: Path) -> None:
    victim = driver.add_node(**NODE_ARGS, resources={"victim": 1})
    driver.wait_for_nodes()
    service.submit(TrialSpec("doomed", payload(gated, str(tmp_path / "never")), resources={"victim": 1}))
    wait_for(service, lambda e: e.trial_id == "doomed" and e.kind == "intermediate", limit=60)
    driver.remove_node(victim)
    ended = wait_for(service, lambda e: e.kind == "end", limit=60)[-1]
    assert ended.trial_id == "doomed" and ended.status == "failed"
    assert "node the trial ran on died" in (ended.error or ""), ended.error
    events = run_all(service, [TrialSpec(f"after-{i}", payload(quick)) for i in range(3)])
    assert all(end_of(e).status == "succeeded" for e in events.values())
