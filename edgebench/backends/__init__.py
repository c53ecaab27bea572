"""Runtime backends. Each module registers itself in ``BACKENDS`` on import."""

from edgebench.backends.base import BACKENDS, Backend, BackendSettings, Session, get_backend, list_backends

__all__ = ["BACKENDS", "Backend", "BackendSettings", "Session", "get_backend", "list_backends"]
