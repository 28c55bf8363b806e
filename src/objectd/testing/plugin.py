"""pytest plugin of objectd (registered through the ``pytest11`` entry point)."""
