"""Chain: wiring order, events through middlewares, state of strategy and middlewares together."""

from __future__ import annotations

import pytest

from nasflow.execution import ModelEventType
from nasflow.strategy import Chain, Deduplication, Filter, GridSearch, Random, StrategyMiddleware


class Tap(StrategyMiddleware):
    """Records what passes through it, in both directions."""

    def __init__(self, name: str, log: list[str]) -> None:
        super().__init__()
        self.name, self.log = name, log

    def submit_models(self, *models) -> None:
        self.log.append(f"{self.name}:submit")
        super().submit_models(*models)

    def handle_event(self, event) -> None:
        if event.event_type is ModelEventType.TrainingEnd:
            self.log.append(f"{self.name}:end")
        super().handle_event(event)


def test_first_middleware_is_closest_to_the_strategy(make_space, search, scripted, sample) -> None:
    log: list[str] = []
    chain = Chain(scripted([sample(8, 8, 8)]), Tap("upper", log), Tap("lower", log))
    result = search(chain, make_space(), budget=5)
    assert log == ["upper:submit", "lower:submit", "lower:end", "upper:end"]
    assert chain[0] is chain.strategy and chain[1].name == "upper"
    assert len(result.ended) == 1


def test_list_models_goes_through_the_strategy(make_space, search) -> None:
    chain = Chain(GridSearch(seed=0), Filter(lambda m: m.sample["w0"] != 64))
    search(chain, make_space(n_layers=2), budget=100)
    models = list(chain.list_models())
    assert len(models) == 12 and models[0].sample == {"w0": 32, "w1": 64}


def test_state_holds_strategy_and_middlewares(make_space, search) -> None:
    chain = Chain(Random(seed=0, dedup=False), Deduplication("invalid"), Filter(lambda m: True))
    result = search(chain, make_space(n_layers=1), budget=4)
    state = result.state()
    assert set(state) == {"strategy", "middlewares"} and len(state["middlewares"]) == 2
    other = Chain(Random(seed=0), Deduplication("invalid"))
    with pytest.raises(ValueError, match="same chain"):
        other.load_state_dict(state)


def test_middlewares_stop_listening_after_the_run(make_space, search) -> None:
    tap = Tap("tap", [])
    chain = Chain(Random(seed=0), tap)
    result = search(chain, make_space(), budget=2)
    assert tap.handle_event not in result.engine._callbacks[ModelEventType.TrainingEnd]


@pytest.mark.parametrize("args, error, match", [
    ((Random(),), ValueError, "at least one middleware"),
    ((Random(), Random()), TypeError, "argument 1 must be a StrategyMiddleware"),
    (("random", Filter(bool)), TypeError, "first argument must be a Strategy"),
])
def test_bad_chains_are_clear(args, error, match) -> None:
    with pytest.raises(error, match=match):
        Chain(*args)


def test_a_middleware_object_is_used_once() -> None:
    middleware = Filter(bool)
    with pytest.raises(ValueError, match="appears twice"):
        Chain(Random(), middleware, middleware)
