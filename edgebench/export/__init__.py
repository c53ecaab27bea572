"""Exporters turn a trained fp32 PyTorch model into a deployable artifact of one format."""

from edgebench.export.base import EXPORTERS, Exporter, get_exporter

__all__ = ["EXPORTERS", "Exporter", "get_exporter"]
