"""Registers the fixtures of dvq_helpers.py (shared helpers live there under a unique module name, so test
modules can import them without colliding with the other suites' conftest modules)."""
import dvq_helpers as _helpers

globals().update({k: v for k, v in vars(_helpers).items() if not k.startswith("__")})
