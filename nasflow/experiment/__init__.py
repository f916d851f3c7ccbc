"""Experiments: NasExperiment, its config, the SQLite experiment store and model export."""
