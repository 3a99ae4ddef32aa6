"""Command-line tools (``python -m vqfast.tools.<name>``)."""
