"""Shared fixtures: one real Ray cluster per test session (a head and a node with two fake boards); the store
fixtures (``store_fixtures``: sqlite_store, filled_store, postgres_url) and the real sshd (``sshd_fixtures``)
come in as plugins, so test modules use them without importing them."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from ray_cluster import BOARDS, RayCluster, start_cluster

pytest_plugins = ("store_fixtures", "sshd_fixtures")


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    """Started on first use; tests that must kill a node add one of their own with ``add_node``."""
    pytest.importorskip("ray", reason="the 'ray' extra is not installed: pip install -c constraints.txt -e '.[ray]'")
    temp_root = Path(tmp_path_factory.mktemp("ray"))
    try:
        with start_cluster(temp_root, head_cpus=2, extra_paths=(Path(__file__).resolve().parent,)) as cluster:
            cluster.add_node("boards", BOARDS, num_cpus=1)
            yield cluster
    finally:
        shutil.rmtree(temp_root, ignore_errors=True)
