"""Benchmarks of streamkit against hand-written loops and peer libraries (``make bench``)."""
