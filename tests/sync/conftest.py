"""tests/sync: the host-sync guard and launch counter live in sync_guard.py, the tiny family tasks in
sync_families.py (unique module names, importable from the test modules)."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
