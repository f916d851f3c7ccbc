"""Run one-shot experiments under DDP on two CPU processes (gloo); each rank writes what it decided.

    python ddp_search.py OUT_DIR STRATEGY [STRATEGY ...]

Lightning starts rank 1 by running this script again; there ``NasExperiment.run()`` only trains its
share (rank 0 keeps the store, in ``OUT_DIR/experiments/ddp-<strategy>``). Both ranks write
``OUT_DIR/<strategy>-<rank>.json``: the architecture in force after every training step, the
export, and the architecture logits.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import lightning
import torch
from oneshot_support import MlpSpace, digits, evaluator

from nasflow.experiment import NasExperiment, NasExperimentConfig
from nasflow.strategy import DARTS, ENAS, GumbelDARTS, Proxyless, RandomOneShot

STRATEGIES = {"DARTS": DARTS, "GumbelDARTS": GumbelDARTS, "Proxyless": Proxyless, "RandomOneShot": RandomOneShot,
              "ENAS": lambda: ENAS(batches_per_update=2)}


class Decisions(lightning.Callback):
    """Writes the architecture in force after each training step (the trainer uses a copy of it)."""

    def __init__(self, path: Path) -> None:
        self.path, self.steps = path, []  # type: ignore[var-annotated]

    def on_train_batch_end(self, trainer: Any, module: Any, *args: Any) -> None:
        arch = module.arch  # a sampled path, or the relaxed weights (Gumbel noise included) of the step
        self.steps.append(arch.sample if arch.sampled else {k: p.tolist() for k, p in arch._probs.items()})

    def on_train_end(self, trainer: Any, module: Any) -> None:
        Path(f"{self.path}-{trainer.global_rank}.steps.json").write_text(json.dumps(self.steps))


def main() -> None:
    out, names = Path(sys.argv[1]), sys.argv[2:]
    torch.set_num_threads(1)
    train, val = digits(200)
    for name in names:
        torch.manual_seed(lightning.pytorch.utilities.rank_zero.rank_zero_only.rank)  # ranks start differently
        decisions = Decisions(out / name)
        widths = (32,) if name == "Proxyless" else (8, 32)
        ddp = "ddp" if name in ("DARTS", "GumbelDARTS") else "ddp_find_unused_parameters_true"
        strategy = STRATEGIES[name]()
        if isinstance(strategy, RandomOneShot):
            strategy.search_samples = 4
        ev = evaluator((train, val), max_epochs=2, accelerator="cpu", devices=2, strategy=ddp, callbacks=[decisions])
        config = NasExperimentConfig(experiment_working_directory=str(out / "experiments"), progress=False)
        experiment = NasExperiment(MlpSpace(widths), ev, strategy, config, id=f"ddp-{name}")
        assert experiment.run() is True
        module = strategy.oneshot_module
        logits = {k: v.tolist() for k, v in module.arch.logits.items()}
        rank = module.global_rank
        steps = json.loads(Path(f"{out / name}-{rank}.steps.json").read_text())
        (out / f"{name}-{rank}.json").write_text(json.dumps(
            {"steps": steps, "export": experiment.export_top_models(1)[0], "logits": logits}))


if __name__ == "__main__":
    main()
