"""Thin protocol shells, one process each: decode, call the service, encode, fail open."""
