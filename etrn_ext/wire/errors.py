"""The one error every codec raises for a peer that breaks its protocol."""


class ProtocolError(ValueError):
    """The peer does not speak the protocol (or breaks its limits)."""
