"""SuccessiveHalving, Hyperband and ASHA: rung budgets, who gets promoted, the budget the evaluator
reads (in process, in local worker processes and on a Ray cluster), and resuming from a JSON state."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
from torch import nn

import nasflow
from nasflow.evaluator import Budgeted, FunctionalEvaluator
from nasflow.experiment import ExperimentStore, NasExperiment, NasExperimentConfig
from nasflow.nn import ModelSpace, MutableLinear
from nasflow.strategy import ASHA, Hyperband, SuccessiveHalving
from nasflow.strategy.multi_fidelity import rung_budgets


class Widths(ModelSpace):
    """Three linear layers of searched widths (the metric grows with their sum)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([MutableLinear(4, nasflow.choice(f"w{i}", [8, 16, 32, 64])) for i in range(3)])


def total_width(model: nn.Module) -> float:
    return float(sum(layer.out_features for layer in model.layers))


def epochs_score(model) -> None:
    """One intermediate per unit of budget; the final metric grows with the budget and the widths."""
    budget = nasflow.trial_budget()
    for epoch in range(int(budget)):
        nasflow.report_intermediate_result(total_width(model) * (epoch + 1) / 9)
    nasflow.report_final_result(total_width(model) * budget / 9 + total_width(model) / 1000)


def test_rung_budgets() -> None:
    assert rung_budgets(1, 27, 3) == [1, 3, 9, 27]
    assert rung_budgets(1, 10, 3) == [1, 3, 10]  # geometric from the top, rounded to whole epochs
    assert rung_budgets(0.5, 2.0, 2) == [0.5, 1.0, 2.0]
    assert rung_budgets(5, 5, 3) == [5]
    with pytest.raises(ValueError, match="min_budget \\(9\\) must not exceed max_budget \\(3\\)"):
        rung_budgets(9, 3, 3)
    with pytest.raises(ValueError, match="eta .* above 1"):
        SuccessiveHalving(1, 9, eta=1)


def _budgets(engine) -> collections.Counter:
    return collections.Counter(m.evaluator.budget for m in engine.list_models())


def test_successive_halving_promotes_the_best_third(make_space, search) -> None:
    result = search(SuccessiveHalving(1, 9, 3, seed=0), make_space(n_layers=4, evaluate=epochs_score), budget=13)
    models = list(result.engine.list_models())
    assert _budgets(result.engine) == {1: 9, 3: 3, 9: 1}
    assert all(isinstance(m.evaluator, Budgeted) for m in models)
    assert all(len(m.metrics.intermediates) == m.evaluator.budget for m in models)  # it read its budget
    rung0, rung1, rung2 = models[:9], models[9:12], models[12:]
    best3 = sorted(rung0, key=lambda m: -m.metric)[:3]
    assert [m.sample for m in rung1] == [m.sample for m in best3]
    assert rung2[0].sample == max(rung1, key=lambda m: m.metric).sample


def test_hyperband_runs_its_brackets_in_order(make_space, search) -> None:
    result = search(Hyperband(1, 9, 3, seed=0), make_space(n_layers=4, evaluate=epochs_score), budget=13 + 6 + 3 + 2)
    budgets = [m.evaluator.budget for m in result.engine.list_models()]
    # s=2: 9 models on 1 epoch, the best 3 on 3, the best on 9; s=1: ceil(3/2*3)=5 on 3, the best on 9;
    # s=0: 3 on 9 (plain training); then bracket s=2 again
    assert budgets == [1] * 9 + [3] * 3 + [9] + [3] * 5 + [9] + [9] * 3 + [1] * 2


def test_asha_promotes_without_waiting_and_keeps_counts(make_space, search) -> None:
    result = search(ASHA(1, 9, 3, seed=1), make_space(n_layers=4, evaluate=epochs_score), budget=40)
    models = list(result.engine.list_models())
    counts = _budgets(result.engine)
    assert counts[1] > counts[3] > counts[9] >= 1 and sum(counts.values()) == 40
    for position, model in enumerate(models):  # a promotion is in the top third of its rung so far
        if model.evaluator.budget == 1:
            continue
        lower = {3: 1, 9: 3}[model.evaluator.budget]
        earlier = [m for m in models[:position] if m.evaluator.budget == lower]
        ranked = sorted(earlier, key=lambda m: -m.metric)[: len(earlier) // 3]
        assert model.sample in [m.sample for m in ranked]


@pytest.mark.parametrize("make", [lambda: ASHA(1, 9, 3, seed=2), lambda: Hyperband(1, 9, 3, seed=2)])
def test_resume_from_json_state_continues_the_same_search(make_space, search, make) -> None:
    whole = search(make(), make_space(n_layers=4, evaluate=epochs_score), budget=30)
    head = search(make(), make_space(n_layers=4, evaluate=epochs_score), budget=17)
    tail = search(make(), make_space(n_layers=4, evaluate=epochs_score), budget=13, state=head.state())
    assert head.keys + tail.keys == whole.keys
    assert _budgets(head.engine) + _budgets(tail.engine) == _budgets(whole.engine)


def _experiment(tmp_path: Path, strategy, service, trials: int) -> list:
    config = NasExperimentConfig("ts", "simplified", service, max_trial_number=trials, trial_concurrency=2,
                                 experiment_working_directory=str(tmp_path), progress=False)
    exp = NasExperiment(Widths(), FunctionalEvaluator(epochs_score), strategy, config)
    assert exp.run() is True
    with ExperimentStore.open(tmp_path / exp.id, read_only=True) as store:
        return store.models(include_payload=False)


def _check_records(records: list, budgets: collections.Counter) -> None:
    """Each trial trained for its budget in the worker: one intermediate per epoch, final to match."""
    seen = collections.Counter(len(r.metrics.intermediates) for r in records)
    assert seen == budgets
    for record in records:
        width = float(sum(record.sample.values()))
        assert record.metrics.final == pytest.approx(width * len(record.metrics.intermediates) / 9 + width / 1000)


def test_successive_halving_on_local_workers(tmp_path: Path) -> None:
    records = _experiment(tmp_path, SuccessiveHalving(1, 9, 3, seed=0), "local", trials=13)
    _check_records(records, collections.Counter({1: 9, 3: 3, 9: 1}))


def test_asha_on_a_ray_cluster(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    from nasflow.training_service import RayTrainingService

    if ray.is_initialized():
        pytest.skip("this process is already connected to Ray")
    # this module travels to Ray's workers as the user's code would: in the runtime env's working_dir
    service = RayTrainingService(address=None, trial_concurrency=2, init_kwargs={"num_cpus": 2},
                                 runtime_env={"working_dir": str(Path(__file__).parent)})
    try:
        records = _experiment(tmp_path, ASHA(1, 9, 3, seed=0), service, trials=12)
    finally:
        if ray.is_initialized():
            ray.shutdown()
    assert all(r.status == "trained" for r in records), [r.error for r in records][:1]
    counts = collections.Counter(len(r.metrics.intermediates) for r in records)
    assert sum(counts.values()) == 12 and counts[1] > counts[3] >= 1
    _check_records(records, counts)


def test_lightning_evaluators_train_for_the_budget(tmp_path: Path) -> None:
    """Classification (any Lightning evaluator) trains ``trial_budget()`` epochs: one validation
    report per epoch, whatever max_epochs says."""
    import torch
    from torch.utils.data import TensorDataset

    from nasflow.evaluator import Classification, DataLoader
    from nasflow.execution import SequentialExecutionEngine
    from nasflow.space import SimplifiedModelSpace

    class Tiny(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.fc = MutableLinear(4, nasflow.choice("classes", [2, 3]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x)

    data = TensorDataset(torch.randn(32, 4), torch.randint(0, 2, (32,)))
    evaluator = Classification(train_dataloaders=DataLoader(data, batch_size=16), val_dataloaders=DataLoader(data),
                               max_epochs=50, enable_progress_bar=False, enable_model_summary=False, logger=False,
                               enable_checkpointing=False, default_root_dir=str(tmp_path))
    engine = SequentialExecutionEngine(max_model_count=3)
    strategy = SuccessiveHalving(1, 2, 2, seed=0)
    strategy.initialize(SimplifiedModelSpace.from_model(Tiny(), evaluator), engine)
    strategy.run()
    epochs = [(m.evaluator.budget, len(m.metrics.intermediates)) for m in engine.list_models()]
    assert epochs == [(1, 1), (1, 1), (2, 2)]
