"""An adapter module that ends the process with status 0 as it is imported (tests/test_run_integrity.py)."""

import os

os._exit(0)
