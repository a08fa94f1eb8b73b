"""Reliability suite: hostile-venue scenarios and crash recovery against the simulator, with invariant checks."""
