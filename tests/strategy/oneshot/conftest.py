"""One-shot tests run torch on one thread (tiny models run as fast, and the machine's cores are shared)."""

from support import one_thread  # noqa: F401 - an autouse fixture for these tests
