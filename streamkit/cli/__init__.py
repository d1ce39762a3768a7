"""The ``streamkit`` command line and the demo."""
