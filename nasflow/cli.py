"""The ``nasflow`` command: run a search script, list, show, view, resume, stop and export experiments,
and print a trial's log.

Torch loads only in the commands that run models (run, resume) and in ``export --format code`` of a
graph-format model: the commands that only read the store (list, show, export, logs, stop, view) start in
a fraction of a second."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import runpy
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from nasflow.dashboard import DEFAULT_PORT
from nasflow.experiment.config import NasExperimentConfig
from nasflow.experiment.export import export_code, top_records
from nasflow.experiment.owner import pid_alive
from nasflow.experiment.store import (
    DESCRIPTION_KEY,
    ExperimentStore,
    ModelRecord,
    StoreError,
    UnknownModelError,
    rank_trained,
)
from nasflow.runtime.metric import metric_number

if TYPE_CHECKING:
    from nasflow.experiment.summary import RunSummary

__all__ = ["main"]

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # refusals, kept apart from what a command prints (a log, an export)


def _base_dir(directory: str | None) -> Path:
    return Path(directory or NasExperimentConfig().experiment_working_directory).expanduser()


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def _metric(record: ModelRecord) -> str:
    value = metric_number(record.metrics.final)
    return "-" if value is None else f"{value:.6g}"


def _open(experiment_id: str, directory: str | None) -> ExperimentStore:
    path = _base_dir(directory) / experiment_id
    if not (path / "nasflow.db").exists():
        raise SystemExit(f"No experiment {experiment_id!r} under {path.parent}. `nasflow list` shows the experiments.")
    return ExperimentStore.open(path, read_only=True)


def cmd_run(args: argparse.Namespace) -> int:
    script = Path(args.script)
    if not script.is_file():
        raise SystemExit(f"No script at {script}.")
    sys.argv = [str(script), *args.script_args]
    sys.path.insert(0, str(script.resolve().parent))
    from nasflow.experiment.summary import finished_runs

    before = len(finished_runs())
    runpy.run_path(str(script), run_name="__main__")
    return _exit_status(finished_runs()[before:])


def _exit_status(runs: Sequence[RunSummary]) -> int:
    """1 when an experiment ran to its end without a single trained model (each run printed why)."""
    hopeless = [run.experiment_id for run in runs if run.status != "stopped" and not run.succeeded]
    if hopeless:
        print(f"nasflow: no trial succeeded in experiment(s) {', '.join(hopeless)}; `nasflow show ID` lists "
              "the failures and `nasflow logs ID MODEL` prints a trial's log.", file=sys.stderr)
        return 1
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    base = _base_dir(args.dir)
    table = Table(title=f"Experiments in {base}", show_edge=False, pad_edge=False)
    for column in ("id", "name", "status", "trained", "failed", "intr.", "total", "best", "created"):
        table.add_column(column, min_width=10 if column == "status" else None)
    unreadable: list[str] = []
    for db in sorted(base.glob("*/nasflow.db"), key=lambda p: p.stat().st_mtime):
        try:
            with ExperimentStore.open(db.parent, read_only=True) as store:
                exp, records = store.experiment(), store.models(include_payload=False)
                ranked = rank_trained(records, store.metric_direction())
        except StoreError as err:
            table.add_row(db.parent.name, "?", "unreadable", "", "", "", "", "", "")
            unreadable.append(f"{db.parent.name}: {err}")
            continue
        best = ranked[0] if ranked else None
        counts = (str(sum(r.status == status for r in records)) for status in ("trained", "failed", "interrupted"))
        table.add_row(exp.experiment_id, exp.name, exp.status, *counts, str(len(records)),
                      _metric(best) if best else "-", _when(exp.created))
    console.print(table)
    for line in unreadable:
        console.print(line, soft_wrap=True, markup=False)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with _open(args.id, args.dir) as store:
        exp, records = store.experiment(), store.models(include_payload=False)
        best = top_records(store, args.top_k, include_payload=False)
        setup = store.get_meta(DESCRIPTION_KEY) or {}
    described = f"{setup['strategy']} strategy, {setup['model_format']} format, " if setup else ""
    console.print(f"[bold]{exp.experiment_id}[/bold] {exp.name}: {exp.status}, {len(records)} models, {described}"
                  f"created {_when(exp.created)}, store {_base_dir(args.dir) / args.id}")
    table = Table(title="Trials")
    for column in ("model", "status", "metric", "intermediates", "sample", "trial", "error"):
        table.add_column(column, overflow="fold")
    for r in records:
        error = (r.error or "").strip().splitlines()[-1:] or [""]
        table.add_row(str(r.model_id), r.status, _metric(r), str(len(r.metrics.intermediates)),
                      json.dumps(r.sample), r.trial_id or "", error[0][:80])
    console.print(table)
    top = Table(title=f"Top {args.top_k} models")
    for column in ("rank", "model", "metric", "sample"):
        top.add_column(column)
    for rank, r in enumerate(best, 1):
        top.add_row(str(rank), str(r.model_id), _metric(r), json.dumps(r.sample))
    console.print(top)
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    """Serve the read-only dashboard of a stored experiment (running elsewhere, or ended) until Ctrl-C."""
    from nasflow.dashboard import serve  # the web stack loads only for this command

    _open(args.id, args.dir).close()  # a missing or foreign store is refused before binding anything
    try:
        dashboard = serve(_base_dir(args.dir) / args.id, host=args.host, port=args.port)
    except (OSError, ImportError) as err:
        console.print(f"[red]error:[/red] {err}")
        return 2
    console.print(f"Dashboard of experiment {args.id}: {dashboard.url} (read-only; Ctrl-C to quit)", soft_wrap=True)
    dashboard.wait()
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from nasflow.experiment.experiment import NasExperiment
    from nasflow.experiment.summary import finished_runs

    before = len(finished_runs())
    NasExperiment.resume(args.id, experiment_working_directory=args.dir, wait_completion=True)
    return _exit_status(finished_runs()[before:])  # the run printed its summary


def cmd_stop(args: argparse.Namespace) -> int:
    """Ctrl-C for an experiment running elsewhere: SIGTERM to its process, which stops it resumably
    (SIGTERM, because a process started with ``nohup ... &`` ignores SIGINT)."""
    with _open(args.id, args.dir) as store:
        record = store.experiment()
    if record.status != "running":
        err_console.print(f"Experiment {args.id} is not running (status {record.status}); nothing to stop.")
        return 1
    if not pid_alive(record.pid):
        err_console.print(f"Experiment {args.id} is not running: its process {record.pid} is gone (killed?). "
                      f"`nasflow resume {args.id}` continues it.")
        return 1
    os.kill(record.pid, signal.SIGTERM)  # type: ignore[arg-type]
    console.print(f"Asked experiment {args.id} (pid {record.pid}) to stop; running trials are interrupted and "
                  f"`nasflow resume {args.id}` continues it.")
    if args.no_wait:
        return 0
    while pid_alive(record.pid):
        with _open(args.id, args.dir) as store:
            if store.experiment().status != "running":
                break
        time.sleep(0.2)
    with _open(args.id, args.dir) as store:
        console.print(f"Experiment {args.id} is {store.experiment().status}.")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    """A model's trial log, as the trial wrote it."""
    with _open(args.id, args.dir) as store:
        try:
            record = store.model(args.model)
        except UnknownModelError:
            err_console.print(f"Experiment {args.id} has no model {args.model}; `nasflow show {args.id}` lists "
                              "its models.")
            return 1
    if record.log_path is None:
        err_console.print(f"Model {args.model} of experiment {args.id} has no trial log (status {record.status}: it "
                      "never started a trial, or ran in the experiment's own process, whose output is the script's).")
        return 1
    try:
        with open(record.log_path, "rb") as log:
            shutil.copyfileobj(log, sys.stdout.buffer)
    except OSError as err:
        err_console.print(f"The log of model {args.model} cannot be read: {err}.")
        return 1
    sys.stdout.flush()
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    with _open(args.id, args.dir) as store:
        records = top_records(store, args.top_k, include_payload=args.format == "code")
        if args.format == "dict":
            text = json.dumps([r.sample for r in records], indent=2)
        else:
            text = "\n\n".join(f"# model {r.model_id}, metric {_metric(r)}\n{export_code(r)}" for r in records)
    if args.output:
        Path(args.output).write_text(text)
        console.print(f"Wrote {len(records)} model(s) to {args.output}")
    else:
        print(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nasflow", description="Neural architecture search on PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a search script (it calls NasExperiment(...).run())")
    run.add_argument("script")
    run.add_argument("script_args", nargs=argparse.REMAINDER)
    run.set_defaults(func=cmd_run)
    for name, func, helptext in (("list", cmd_list, "list experiments"),
                                 ("show", cmd_show, "trials and best models of an experiment"),
                                 ("view", cmd_view, "serve an experiment's dashboard in the browser"),
                                 ("resume", cmd_resume, "continue a stopped or killed experiment"),
                                 ("export", cmd_export, "export the best models"),
                                 ("stop", cmd_stop, "stop a running experiment (resumable)"),
                                 ("logs", cmd_logs, "print a model's trial log")):
        p = sub.add_parser(name, help=helptext)
        if name != "list":
            p.add_argument("id")
        p.add_argument("--dir", help="experiment working directory (default ~/.nasflow/experiments)")
        if name == "logs":
            p.add_argument("model", type=int, help="model id (as in `nasflow show ID`)")
        if name == "stop":
            p.add_argument("--no-wait", action="store_true", help="return once signalled, not once stopped")
        if name in ("show", "export"):
            p.add_argument("--top-k", type=int, default=5 if name == "show" else 1)
        if name == "view":
            p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0 picks a free one")
            p.add_argument("--host", default="127.0.0.1",
                           help="address to listen on (default 127.0.0.1; another exposes it, unauthenticated)")
        if name == "export":
            p.add_argument("--format", choices=("dict", "code"), default="dict")
            p.add_argument("--output", help="write to this file instead of stdout")
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (StoreError, ValueError, RuntimeError) as err:  # e.g. resuming a running or failed experiment
        console.print(f"[red]error:[/red] {err}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
