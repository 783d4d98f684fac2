"""The client folder's fixture: ``world`` (built in ``client_world``, with the constants
and helpers the test modules import from there; a test module never imports a conftest)."""

from client_world import world

__all__ = ["world"]
