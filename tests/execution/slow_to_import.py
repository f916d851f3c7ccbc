"""A module the fork server of one test preloads: its import stands for a slow start-up (a large
framework), longer than that test's trial timeout."""

import time

IMPORT_SECONDS = 6.0
time.sleep(IMPORT_SECONDS)
