"""``NasExperiment``: a model space, an evaluator and a strategy, run to completion and recorded.

The experiment wires the layers together (format, engine, store, strategy), drives the strategy in
a background thread so the caller can watch, stop or Ctrl-C it, and keeps everything in a SQLite
store so a stopped or killed experiment can be resumed, viewed and exported.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from torch import nn

from nasflow.execution import ExecutionEngine, ModelEventType, SequentialExecutionEngine
from nasflow.space import ExecutableModelSpace, ModelStatus, RawFormatModelSpace, SimplifiedModelSpace

from .config import NasExperimentConfig
from .engines import build_engine
from .export import export_code, top_records
from .journals import UNFINISHED, ingest_journals
from .persistence import SETUP_KEY, dump_setup, load_setup, restore_model
from .progress import ProgressDisplay
from .recording import RecordingMiddleware
from .store import DB_FILENAME, DESCRIPTION_KEY, METRIC_DIRECTION_KEY, ExperimentStore, StoreError, StoreNotFoundError
from .stored import StoredModel, config_from_record, describe, untrusted
from .strategy_state import StrategyStateSaver
from .summary import record_run, summarize

__all__ = ["NasExperiment", "EXPERIMENT_STOPPED", "EXPERIMENT_FAILED"]

_logger = logging.getLogger(__name__)

# The reason recorded for a model the end of the run cut short (not a strategy's decision): resume re-runs it.
EXPERIMENT_STOPPED = "experiment stopped; resume re-runs this model"
EXPERIMENT_FAILED = "experiment failed; resume re-runs this model"
_CUT_SHORT = {"stopped": EXPERIMENT_STOPPED, "failed": EXPERIMENT_FAILED}
ENGINE_STATE_INTERVAL = 1.0  # seconds between saves of the engine's state (its elapsed time)

Formatter = Literal["dict", "instance", "code"]


def _new_id() -> str:
    return uuid.uuid4().hex[:8]


def experiment_dir(experiment_id: str, working_directory: str | os.PathLike[str] | None = None) -> Path:
    base = Path(working_directory) if working_directory else Path(NasExperimentConfig().experiment_working_directory)
    return base.expanduser() / experiment_id


def _dashboard_socket(port: int | None) -> socket.socket | None:
    """The dashboard's socket, bound before anything is created so a busy port fails first."""
    if port is None:
        return None
    from nasflow.dashboard import bind, require_installed

    require_installed()
    return bind("127.0.0.1", port)


def to_executable_space(model_space: Any, evaluator: Any, model_format: str,
                        **dummy_input: Any) -> ExecutableModelSpace:
    """Wrap a user's space in the format the config names."""
    if isinstance(model_space, ExecutableModelSpace):
        return model_space
    if not isinstance(model_space, nn.Module):
        raise TypeError(f"The model space must be a torch module (a nasflow.nn.ModelSpace), got {model_space!r}.")
    if model_format == "raw":
        return RawFormatModelSpace.from_model(model_space, evaluator)
    if model_format == "simplified":
        return SimplifiedModelSpace.from_model(model_space, evaluator)
    from nasflow.space.graph import GraphModelSpace

    return GraphModelSpace.from_model(model_space, evaluator, **dummy_input)


class NasExperiment:
    """``NasExperiment(model_space, evaluator, strategy, config=None).run()``.

    With no config, one is inferred from the strategy (see ``NasExperimentConfig``); the config is
    validated before anything runs. Results land in ``<experiment_working_directory>/<id>/``.
    """

    def __init__(self, model_space: Any, evaluator: Any = None, strategy: Any = None,
                 config: NasExperimentConfig | None = None, id: str | None = None) -> None:  # noqa: A002
        if strategy is None:
            raise TypeError("NasExperiment needs a strategy, e.g. nasflow.strategy.Random().")
        if evaluator is None and not isinstance(model_space, ExecutableModelSpace):
            raise TypeError("NasExperiment needs an evaluator, e.g. FunctionalEvaluator(train_and_test).")
        # inferred now (NNI), so `exp.config.max_trial_number = 3` works before run(); unset fields are
        # inferred again at start, after the user's edits
        config = config if config is not None else NasExperimentConfig.default(model_space, evaluator, strategy)
        self._init_fields(model_space, evaluator, strategy, config, id or _new_id())

    def _init_fields(self, model_space: Any, evaluator: Any, strategy: Any, config: NasExperimentConfig | None,
                     experiment_id: str, *, trusted: bool = True) -> None:
        self.model_space, self.evaluator, self.strategy = model_space, evaluator, strategy
        self.config = config
        self.id = experiment_id
        self._trusted = trusted  # may unpickle its store's setup (False for a plain view)
        self.description: dict[str, Any] | None = None  # the setup as JSON (strategy, format...): see stored.describe
        self._store: ExperimentStore | None = None
        self._recorder: RecordingMiddleware | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._stopping = threading.Event()
        self._done = threading.Event()  # set when the search thread has recorded how it ended
        self._ctrl_c = threading.Event()  # Ctrl-C came while run() held it back (see _ctrl_c_held)
        self._progress: ProgressDisplay | None = None
        self.dashboard: Any = None  # the nasflow.dashboard.Dashboard that run(port=...) serves
        self._space: ExecutableModelSpace | None = None
        self._strategy_saver: StrategyStateSaver | None = None
        self._engine_state_saved_at = -float("inf")

    # ---- running ----------------------------------------------------------------------------
    def run(self, config: NasExperimentConfig | None = None, port: int | None = None,
            wait_completion: bool = True) -> bool:
        """Run the search; with ``wait_completion`` block until it ends (Ctrl-C stops it cleanly).

        Returns True when the search completed, False when it was stopped. ``port`` serves the live
        dashboard on http://127.0.0.1:port (0: a free port; see ``experiment.dashboard.url``), with a
        button that stops the experiment; it serves until the process exits or
        ``experiment.dashboard.close()``. Needs ``pip install 'nasflow[dashboard]'``.
        """
        if config is not None:
            self.config = config
        if _one_shot(self.strategy) and _distributed_rank() > 0:
            self._train_for_rank_zero()
            return True
        with self._ctrl_c_held():
            self.start(port)
            if wait_completion:
                return self.wait_completion()
            if self._ctrl_c.is_set():
                self.stop()
            return True

    @contextmanager
    def _ctrl_c_held(self) -> Iterator[None]:
        """Ctrl-C (SIGINT) or SIGTERM (``nasflow stop``, ``kill``, a container's shutdown) in ``run()``:
        before the search thread exists it aborts the start; once the thread is launched it is held
        until ``wait_completion`` stops the experiment cleanly (resumable), rather than raised halfway
        through wiring the thread, the store and the engine. A second one raises at once. Signals the
        caller handles its own way are left alone; an ignored SIGINT (``nohup ... &``) stays ignored,
        so ``nasflow stop`` uses SIGTERM."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_signal(signum: int, frame: Any) -> None:
            if self._thread is None or self._ctrl_c.is_set():
                raise KeyboardInterrupt
            self._ctrl_c.set()

        defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
        previous = {signum: signal.signal(signum, on_signal)
                    for signum, default in defaults.items() if signal.getsignal(signum) is default}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _train_for_rank_zero(self) -> None:
        """In a DDP process other than rank 0 (Lightning starts them by running the script again): take
        part in the supernet's training; rank 0 alone keeps the experiment's store and checkpoints."""
        config = (self.config or NasExperimentConfig()).canonical(self.strategy)
        self._space = to_executable_space(self.model_space, self.evaluator, config.model_format)  # type: ignore[arg-type]
        self.strategy.initialize(self._space, SequentialExecutionEngine())
        self.strategy.run()

    def start(self, port: int | None = None) -> None:
        """Check everything, create the store, and run the search in a background thread.

        Every refusal (config, space, engine, an unpicklable setup, a busy dashboard port) happens
        before the experiment's directory is created; should anything fail after that, the new store
        (and the directory, if it made it) is removed again. Another process running the same id
        refuses this start, naming its pid.
        """
        if self._thread is not None:
            raise RuntimeError(f"Experiment {self.id} was already started.")
        config = (self.config or NasExperimentConfig()).canonical(self.strategy)
        extra = {"dummy_input": config.dummy_input} if config.dummy_input is not None else {}
        space = to_executable_space(self.model_space, self.evaluator, config.model_format, **extra)  # type: ignore[arg-type]
        setup = dump_setup(space, self.strategy, config)
        path = experiment_dir(self.id, config.experiment_working_directory)
        sock = _dashboard_socket(port)
        try:
            engine = build_engine(config, path / "trials", space.evaluator)
        except BaseException:
            self._close_dashboard(sock)
            raise
        try:
            store = ExperimentStore.create(path / DB_FILENAME, self.id, config.experiment_name or self.id,
                                           config.to_dict(), meta={SETUP_KEY: setup})
        except BaseException:
            engine.shutdown()
            self._close_dashboard(sock)
            raise
        try:
            self.config = config
            self._serve_dashboard(store, sock)
            self._launch(space, store, engine, restored=[], resubmit=[], strategy_state=None, engine_state=None,
                         saver=StrategyStateSaver(store))
        except BaseException:
            if self._progress is not None:
                self._progress.stop()
            self._close_dashboard(sock)
            engine.shutdown()
            store.discard()
            self._store = self._recorder = self._progress = None
            raise

    def _serve_dashboard(self, store: ExperimentStore, sock: socket.socket | None, *, live: bool = True) -> None:
        """The dashboard on the bound ``sock`` (if any): with this experiment's stop when ``live``."""
        if sock is None:
            return
        from nasflow.dashboard import serve

        self.dashboard = serve(store.path, sock=sock, stop=self.stop if live else None)
        print(f"Dashboard of experiment {self.id}: {self.dashboard.url}{'' if live else ' (read-only)'}",
              file=sys.stderr, flush=True)

    def _close_dashboard(self, sock: socket.socket | None) -> None:
        if self.dashboard is not None:
            self.dashboard.close()
            self.dashboard = None
        elif sock is not None:
            sock.close()

    def _launch(self, space: ExecutableModelSpace, store: ExperimentStore, engine: ExecutionEngine,
                restored: list[ExecutableModelSpace], resubmit: list[ExecutableModelSpace], strategy_state: Any,
                engine_state: dict | None, saver: StrategyStateSaver) -> None:
        config = self.config
        assert config is not None
        self._space, self._store, self._strategy_saver = space, store, saver
        self.description = describe(space, self.strategy, config)
        store.set_meta(DESCRIPTION_KEY, self.description)  # what readers show, without unpickling the setup
        store.set_meta(METRIC_DIRECTION_KEY, space.metric_direction)  # how readers rank
        if engine_state:
            engine.load_state_dict(engine_state)
        recorder = RecordingMiddleware(store, on_submit=self._save_progress, on_model_end=self._save_progress,
                                       restored=restored)
        recorder.set_engine(engine)
        self._recorder = recorder
        _attach_strategy_dir(self.strategy, store)
        self.strategy.initialize(space, recorder)
        if strategy_state is not None:
            self.strategy.load_state_dict(strategy_state)
        self._progress = ProgressDisplay(config.max_trial_number, restored, bar=config.progress)
        for event_type in ModelEventType:
            recorder.register_model_event_callback(event_type, self._progress.on_event)
        self._progress.start()
        store.set_experiment_status("running", os.getpid())
        self._thread = threading.Thread(target=self._drive, args=(recorder, engine, resubmit),
                                        name=f"nasflow-{self.id}", daemon=True)
        self._thread.start()

    def _drive(self, recorder: RecordingMiddleware, engine: ExecutionEngine,
               resubmit: list[ExecutableModelSpace]) -> None:
        try:
            if resubmit:
                recorder.submit_models(*resubmit)
            self.strategy.run()
            recorder.wait_models(wait_all=True)
        except BaseException as err:  # surfaced by wait_completion
            self._error = err
        finally:
            try:
                try:
                    recorder.note_cut_short()  # before the shutdown cancels them
                finally:
                    engine.shutdown()
            finally:
                try:
                    self._finish_store()
                    self._report_summary()
                finally:
                    self._done.set()

    def _finish_store(self) -> None:
        """Record how the run ended: the models it cut short (re-run by resume, whatever ended the run),
        the strategy's last state, and the experiment's status. Each step is tried even if one before
        failed (a full disk), so the status is written whenever the store can still be written."""
        store, recorder = self._store, self._recorder
        assert store is not None and recorder is not None
        status = "failed" if self._error else "stopped" if self._stopping.is_set() else "done"
        try:
            try:
                for model in recorder.list_models() if status in _CUT_SHORT else ():
                    cut = model.status == ModelStatus.Interrupted or not model.status.completed()
                    if model.model_id in recorder.cut_short_ids and cut:
                        store.set_status(model.model_id, ModelStatus.Interrupted.value, _CUT_SHORT[status])
                self._save_progress(force=True)
            except Exception as err:
                self._error = self._error or err
            try:
                store.set_experiment_status("failed" if self._error else status)
            except StoreError as err:
                _logger.error("Experiment %s: cannot record how it ended (resume works regardless): %s", self.id, err)
                self._error = self._error or err
        finally:
            if self._progress is not None:
                self._progress.stop()
            self._release_writer()

    def _report_summary(self) -> None:
        """Counts, the best model, and why trials failed when none succeeded, on stderr; kept for the CLI."""
        if self._store is None:
            return
        try:
            summary = summarize(self._store)
        except StoreError as err:
            _logger.warning("Experiment %s finished, but its summary cannot be read: %s", self.id, err)
            return
        record_run(summary)
        print(summary.text(), file=sys.stderr, flush=True)

    def _release_writer(self) -> None:
        """Close the writing connection (its thread, and the WAL folded into the file); keep reading."""
        store = self._store
        if store is None or store.read_only:
            return
        store.close()
        try:
            self._store = ExperimentStore.open(store.path, read_only=True)
        except StoreError as err:
            _logger.warning("Experiment %s finished, but its store cannot be reopened to read it: %s", self.id, err)

    def _save_progress(self, *, force: bool = False) -> None:
        """Strategy and engine state, saved before each submission is recorded and after each model ends.

        The strategy's state is written incrementally: what changed of it, its append-only lists by
        their new entries (see ``StrategyStateSaver``); the engine's, which only matters for the time
        budget after a crash, at most once per ``ENGINE_STATE_INTERVAL`` seconds and at the end.
        """
        store, recorder, saver = self._store, self._recorder, self._strategy_saver
        if store is None or recorder is None or saver is None:
            return
        saver.save(self.strategy.state_dict)
        now = time.monotonic()
        if force or now - self._engine_state_saved_at >= ENGINE_STATE_INTERVAL:
            store.set_meta("engine_state", recorder.engine.state_dict())
            self._engine_state_saved_at = now

    def wait_completion(self) -> bool:
        """Block until the search ends. Ctrl-C stops the experiment (resumable) and returns False."""
        thread = self._thread
        if thread is None:
            raise RuntimeError("The experiment has not been started; call run().")
        try:
            # An Event, not thread.join(): in CPython 3.11, Ctrl-C during join() leaves is_alive()
            # returning False for a thread that still runs, so nothing would wait for the stop.
            while not self._done.wait(0.2):
                if self._ctrl_c.is_set():
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            _logger.warning("Interrupted: stopping experiment %s (resume it with `nasflow resume %s`).",
                            self.id, self.id)
            self.stop()
        if self._error is not None:
            raise RuntimeError(f"Experiment {self.id} failed: {self._error!r}") from self._error
        return not self._stopping.is_set()

    def stop(self) -> None:
        """Stop trying new models, interrupt running ones, and record everything; resumable."""
        if self._recorder is None or self._thread is None or self._done.is_set():
            return  # not started, or already over
        self._stopping.set()
        self._recorder.stop()
        if self._thread is not threading.current_thread():
            while not self._done.wait(0.2):
                pass

    # ---- results ----------------------------------------------------------------------------
    def list_models(self, status: ModelStatus | None = None) -> list[ExecutableModelSpace]:
        """Every model of the experiment (restored ones included), optionally filtered by status."""
        if self._recorder is not None:
            return list(self._recorder.list_models(status))
        store = self._require_store()
        records = store.models(status.value if status else None, include_payload=False)
        if not self._trusted:  # a plain view: the models as recorded, nothing unpickled
            direction = store.metric_direction()
            return [StoredModel(r, self.id, direction) for r in records]
        space = self._setup_space()
        return [restore_model(space, r) for r in records]

    def export_top_models(self, top_k: int = 1, *, formatter: Formatter = "dict") -> list[Any]:
        """The best ``top_k`` trained models as samples (``dict``), torch modules (``instance``) or
        PyTorch source (``code``, graph format only)."""
        if formatter not in ("dict", "instance", "code"):
            raise ValueError(f"formatter must be 'dict', 'instance' or 'code', got {formatter!r}.")
        if self._store is None and _one_shot(self.strategy) and _distributed_rank() > 0:  # a DDP worker: no store
            models = list(self.strategy.list_models())
            return [m.sample for m in models] if formatter == "dict" else [m.executable_model() for m in models]
        store = self._require_store()
        records = top_records(store, top_k, include_payload=formatter == "code")
        if formatter == "dict":
            return [r.sample for r in records]
        if formatter == "code":
            return [export_code(r) for r in records]
        space = self._setup_space()
        return [space.freeze(r.sample).executable_model() for r in records]

    def _require_store(self) -> ExperimentStore:
        if self._store is None:
            raise RuntimeError("The experiment has not run yet; call run() first.")
        return self._store

    def _setup_space(self) -> ExecutableModelSpace:
        if self._space is None:
            if not self._trusted:
                raise untrusted(self.id, "Rebuilding models (formatter='instance')")
            store = self._require_store()
            self._space, strategy, _ = load_setup(store)
            if self.strategy is None:  # a trusted view: the strategy as configured
                self.strategy = strategy
            if _one_shot(self.strategy):  # its models inherit the trained supernet's weights
                _attach_strategy_dir(self.strategy, store)
                self.strategy.load_supernet(self._space)
        return self._space

    # ---- resume and view --------------------------------------------------------------------
    @classmethod
    def _open_store(cls, experiment_id: str, working_directory: Any, read_only: bool) -> ExperimentStore:
        path = experiment_dir(experiment_id, working_directory)
        try:
            return ExperimentStore.open(path / DB_FILENAME, read_only=read_only)
        except StoreNotFoundError as err:
            if path.is_dir():  # a creation killed before it published the store leaves the folder only
                raise ValueError(f"Experiment {experiment_id!r} in {path} was never created completely (its "
                                 "creation was interrupted before its store was written), so there is nothing to "
                                 "resume or show. Run the search again: the same id works.") from err
            raise ValueError(f"No experiment {experiment_id!r} under {path.parent}: `nasflow list` shows the "
                             "experiments there (or pass experiment_working_directory).") from err

    @classmethod
    def resume(cls, experiment_id: str, *, experiment_working_directory: str | None = None,
               wait_completion: bool = True, port: int | None = None) -> NasExperiment:
        """Continue a stopped, failed or killed experiment: finished models are kept, every model the
        run did not finish re-runs, the strategy continues from its saved state, and old trials count
        against the budget. Refused at once while another process writes the experiment (its owner
        lock, not a recorded pid, decides). ``port`` serves the live dashboard, as in :meth:`run`."""
        store = cls._open_store(experiment_id, experiment_working_directory, read_only=False)
        experiment, sock = None, None
        try:
            space, strategy, config = load_setup(store)
            ingest_journals(store, store.path.parent / "trials")  # reported but unrecorded results: not re-run
            records = store.models()
            unfinished = [r for r in records if r.status in UNFINISHED
                          or (r.status == ModelStatus.Interrupted.value and r.error in _CUT_SHORT.values())]
            unfinished_ids = {r.model_id for r in unfinished}
            restored = [restore_model(space, r) for r in records if r.model_id not in unfinished_ids]
            resubmit = []
            for r in unfinished if not _one_shot(strategy) else ():  # a one-shot search continues its own run
                model = space.freeze(r.sample)
                model.model_id = r.model_id
                resubmit.append(model)
            engine_state = dict(store.get_meta("engine_state") or {})
            engine_state["model_count"] = sum(1 for m in restored if m.status != ModelStatus.Invalid)
            saver = StrategyStateSaver(store)
            strategy_state = saver.load()
            experiment = cls(space, None, strategy, config, id=store.experiment().experiment_id)
            sock = _dashboard_socket(port)
            engine = build_engine(config, store.path.parent / "trials", space.evaluator)
            experiment._serve_dashboard(store, sock)
            experiment._launch(space, store, engine, restored, resubmit, strategy_state, engine_state, saver)
        except BaseException:
            if experiment is not None:
                experiment._close_dashboard(sock)
            store.close()
            raise
        if wait_completion:
            experiment.wait_completion()
        return experiment

    @classmethod
    def view(cls, experiment_id: str, port: int | None = None, non_blocking: bool = False, *,
             experiment_working_directory: str | None = None, trusted: bool = False) -> NasExperiment:
        """Open an experiment read-only to list and export its models.

        Viewing reads JSON and SQL only: ``list_models()`` gives the models as recorded and
        ``export_top_models`` exports samples and code. Rebuilding modules (``formatter='instance'``)
        unpickles the stored setup, which can run any code, so it needs ``trusted=True``: pass it
        only for a store you trust. As in NNI, ``port`` also serves its read-only dashboard (as
        ``nasflow view``) and, unless ``non_blocking``, serves until Ctrl-C; otherwise
        ``experiment.dashboard.close()`` ends it."""
        sock = _dashboard_socket(port)
        try:
            store = cls._open_store(experiment_id, experiment_working_directory, read_only=True)
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        experiment = cls.__new__(cls)
        experiment._init_fields(None, None, None, config_from_record(store.config()), experiment_id,
                                trusted=trusted)
        experiment.description = store.get_meta(DESCRIPTION_KEY)
        experiment._store = store
        experiment._serve_dashboard(store, sock, live=False)
        if experiment.dashboard is not None and not non_blocking:
            experiment.dashboard.wait()
        return experiment


def _one_shot(strategy: Any) -> bool:
    return bool(getattr(strategy, "one_shot", False))


def _distributed_rank() -> int:
    """This process's rank in a DDP job (torchrun, or Lightning starting the other ranks); 0 otherwise."""
    return max(int(os.environ.get(name, "0") or 0) for name in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def _attach_strategy_dir(strategy: Any, store: ExperimentStore) -> None:
    """Give the strategy its folder in the experiment (one-shot checkpoints live there)."""
    attach = getattr(strategy, "set_checkpoint_dir", None)
    if attach is not None:
        attach(store.path.parent / "strategy")

