"""Measurement: the timed harness, statistics, the worker, energy meters, and the device context (CPU, Jetson)."""
