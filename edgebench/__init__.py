"""edgebench: measure pruned and quantized CNN variants on real deployment runtimes."""

__version__ = "0.1.0"
