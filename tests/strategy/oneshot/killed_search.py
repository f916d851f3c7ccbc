"""A DARTS experiment that kills itself (SIGKILL) when its third epoch starts, if NASFLOW_TEST_KILL is set.

    python killed_search.py EXPERIMENTS_DIR EXPERIMENT_ID
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import lightning
import torch
from oneshot_support import MlpSpace, digits, evaluator

from nasflow.experiment import NasExperiment, NasExperimentConfig
from nasflow.strategy import DARTS

EPOCHS = 4


class KillAtThirdEpoch(lightning.Callback):
    def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
        if trainer.current_epoch == 2 and os.environ.get("NASFLOW_TEST_KILL"):
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = NasExperimentConfig(experiment_working_directory=sys.argv[1], progress=False)
    ev = evaluator(digits(500), max_epochs=EPOCHS, callbacks=[KillAtThirdEpoch()])
    NasExperiment(MlpSpace(), ev, DARTS(), config, id=sys.argv[2]).run()
