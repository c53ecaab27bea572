"""Measurement: timed harness, statistics, worker isolation, machine context."""
