"""plyrd: a self-hostable music node for the AT Protocol."""

__version__ = "0.1.0"
