"""The decisions: stdlib only, no I/O, no clock (``now`` is always a parameter)."""
