"""Dose physics: pure functions on numpy arrays, free of I/O."""
