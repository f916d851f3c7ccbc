"""Test-suite root: pytest puts this folder on ``sys.path``, so test modules can ``import support``."""
