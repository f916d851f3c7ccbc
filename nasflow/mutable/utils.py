"""NNI's ``nni.mutable.utils`` module path: labels and counters."""

from .labels import auto_label, label, label_scope, reset_uid, uid

__all__ = ["uid", "reset_uid", "label_scope", "auto_label", "label"]
