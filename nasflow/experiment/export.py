"""What readers export from a store: its best trained models, and the PyTorch source of a graph-format
model. Importing this needs no torch (``nasflow list/show/export`` stay fast); only generating code
loads the graph format, and nothing here unpickles."""

from __future__ import annotations

from .store import ExperimentStore, ModelRecord, rank_trained

__all__ = ["export_code", "graph_code", "top_records"]


def top_records(store: ExperimentStore, top_k: int | None, *, include_payload: bool = True) -> list[ModelRecord]:
    """Trained models of a store, best final metric first (in the experiment's metric direction);
    ``include_payload=False`` skips the payloads that only code export reads."""
    ranked = rank_trained(store.models("trained", include_payload=include_payload), store.metric_direction())
    return ranked[:top_k] if top_k is not None else ranked


def graph_code(ir_json: str) -> str:
    """PyTorch source of a graph-format model's IR (loads the graph format, and torch, on first use)."""
    from nasflow.space.graph import GraphModelSpace

    return GraphModelSpace.load(ir_json).code()


def export_code(record: ModelRecord) -> str:
    """PyTorch source of a graph-format model; other formats carry no graph to generate it from."""
    if record.format != "graph" or record.payload is None:
        raise ValueError(
            f"formatter='code' needs the graph model format, but model {record.model_id} is {record.format!r}. "
            "Run the experiment with NasExperimentConfig(..., model_format='graph') to export code."
        )
    return graph_code(record.payload.decode())
