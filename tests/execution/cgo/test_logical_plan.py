"""The logical plan decides what merges and what batches; placement spreads a trial over its GPUs."""

from __future__ import annotations

import pytest
import torch
from cgo_support import TinyNet, score_by_size, tiny_data, tiny_evaluator
from torch import nn

import nasflow
from nasflow.evaluator import FunctionalEvaluator, split_multi_model_metric
from nasflow.evaluator.budget import Budgeted
from nasflow.execution.cgo import LogicalPlan, MergedTrial, optimize, place
from nasflow.runtime import trial_context
from nasflow.space import ExecutableModelSpace
from nasflow.space.graph import GraphModelSpace

pytestmark = pytest.mark.filterwarnings("ignore:.*treespec", "ignore:.*does not have many workers")


@pytest.fixture(scope="module")
def space() -> GraphModelSpace:
    searched = tiny_evaluator(tiny_data(), learning_rate=nasflow.choice("lr", [0.001, 0.5]))
    return GraphModelSpace.from_model(TinyNet(), searched)


def models(space: GraphModelSpace, *choices: int, lr: float = 0.001) -> list[ExecutableModelSpace]:
    made = [space.freeze({"mid": choice, "lr": lr}) for choice in choices]
    for index, model in enumerate(made):
        model.model_id = index
    return made


def ids(plan: LogicalPlan) -> list[int]:
    return [m.model_id for m in plan.models]


def test_dedup_merges_inputs_and_batching_groups_same_architectures(space: GraphModelSpace) -> None:
    queued = models(space, 0, 1, 0, 2, 0, 1)
    queued[2] = space.freeze({"mid": 0, "lr": 0.5})  # another learning rate, same data and architecture
    queued[2].model_id = 2
    naive = LogicalPlan.from_models(queued)
    assert len(naive.inputs) == 6 and naive.batch_groups == []
    plan = optimize(naive)
    assert len(plan.inputs) == 1 and plan.inputs[0].consumers == [0, 1, 2, 3, 4, 5]
    assert plan.batch_groups == [[0, 2, 4], [1, 5]]  # mid=0 three times, mid=1 twice; mid=2 alone
    assert optimize(naive, batching=False).batch_groups == []
    trials = plan.trials(4)  # groups stay together, oldest first, small units fill the gaps
    assert [ids(t) for t in trials] == [[0, 2, 4, 3], [1, 5]]
    assert [t.batch_groups for t in trials] == [[[0, 1, 2]], [[0, 1]]]
    assert [ids(t) for t in plan.trials(2)] == [[0, 2], [4, 3], [1, 5]]  # a group larger than a trial is cut


def test_models_that_cannot_merge_keep_their_own_input(space: GraphModelSpace) -> None:
    other_data = GraphModelSpace.from_model(TinyNet(), tiny_evaluator(tiny_data(seed=1)))
    functional = GraphModelSpace.from_model(TinyNet(), FunctionalEvaluator(score_by_size))
    queued = [*models(space, 0, 1), *(other_data.freeze({"mid": c}) for c in (0, 1)),
              *(functional.freeze({"mid": 0}) for _ in range(2))]
    for index, model in enumerate(queued):
        model.model_id = index
    plan = optimize(LogicalPlan.from_models(queued))
    assert [node.consumers for node in plan.inputs] == [[0, 1], [2, 3], [4], [5]]
    assert [ids(t) for t in plan.trials(8)] == [[0, 1], [2, 3], [4], [5]]
    assert plan.batch_groups == []  # same architecture, but never sharing an input


def test_merged_trial_is_named_after_its_models_and_takes_no_model_id(space: GraphModelSpace) -> None:
    queued = models(space, 0, 1, 0, 1, 0, 1)
    for model, model_id in zip(queued, (7, 8, 9, 10, 11, 12), strict=True):
        model.model_id = model_id
    small, large = (MergedTrial(t) for t in optimize(LogicalPlan.from_models(queued)).trials(3)[:1] +
                    optimize(LogicalPlan.from_models(queued)).trials(6)[:1])
    assert small.trial_name == "7+9+11" and small.model_id == 7 and small.batch_groups == [[0, 1, 2]]
    assert large.trial_name == "7+9+11+3more"


def test_placement_balances_gpus_and_keeps_batch_groups_together() -> None:
    models = [nn.Linear(100, 100), nn.Linear(100, 100), nn.Linear(100, 100), nn.Linear(10, 10), nn.Linear(300, 300)]
    assert set(place(models, [[0, 1, 2]], gpu_count=0).values()) == {torch.device("cpu")}
    device_map = place(models, [[0, 1, 2]], gpu_count=2)
    assert device_map[0] == device_map[1] == device_map[2]  # one batch group, one GPU
    assert device_map[4] != device_map[0]  # the largest other model goes to the other GPU
    spread = place(models, [], gpu_count=3)
    assert len(set(spread.values())) == 3  # five models over all three GPUs


def test_batch_groups_batch_on_gpus_and_on_cpu_only_when_asked(space: GraphModelSpace) -> None:
    """On CPU, batching measured no faster than merging (benchmarks/cgo_batching.py): CPU-placed
    groups train merged unless ``batching='always'`` asked for them to be batched anyway."""
    plan = optimize(LogicalPlan.from_models(models(space, 0, 0, 1))).trials(3)[0]
    default, always = MergedTrial(plan), MergedTrial(plan, batch_on_cpu=True)
    assert default.batch_groups == always.batch_groups == [[0, 1]]
    assert default.executable_model().groups == []  # this machine has no GPU
    batched = always.executable_model()
    assert [group.models for group in batched.groups] == [[batched.models[0], batched.models[1]]]
    batched.unbatch()


def test_models_merge_under_one_training_budget(space: GraphModelSpace) -> None:
    """A multi-fidelity strategy's budgets: equal budgets merge, and the merged trial trains for it."""
    queued = models(space, 0, 1, 0)
    for model, budget in zip(queued, (2, 2, 1), strict=True):
        model.evaluator = Budgeted(model.evaluator, budget)
    plan = optimize(LogicalPlan.from_models(queued))
    assert [node.consumers for node in plan.inputs] == [[0, 1], [2]]
    reports: list[tuple[str, object]] = []
    with trial_context(lambda kind, value: reports.append((kind, value))):
        MergedTrial(plan.trials(2)[0]).execute()
    assert [kind for kind, _ in reports] == ["intermediate", "intermediate", "final"]  # 2 epochs, not 1
    assert split_multi_model_metric(reports[-1][1], 2)[1]["val_acc"] >= 0  # type: ignore[arg-type]
