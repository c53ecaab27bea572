"""Runtimes, one folder each: the exporter of its artifact format, its backends and its declared needs."""

from edgebench.runtimes.base import (
    BACKENDS,
    EXPORTERS,
    Backend,
    BackendSettings,
    Exporter,
    Runtime,
    Session,
    get_backend,
    get_exporter,
    list_backends,
    list_runtimes,
)

__all__ = [
    "BACKENDS",
    "EXPORTERS",
    "Backend",
    "BackendSettings",
    "Exporter",
    "Runtime",
    "Session",
    "get_backend",
    "get_exporter",
    "list_backends",
    "list_runtimes",
]
