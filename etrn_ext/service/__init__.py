"""Use cases: the one API that every front end (etrnctl, the daemons) calls.

Each module holds the use cases of one area as functions taking a ``Context``; the
context opens the index and the MTA adapter lazily, so a command pays only for what
it touches.
"""
