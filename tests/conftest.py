"""Shared fixtures: one real Ray cluster per test session (a head and a node with two fake boards)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from ray_cluster import RayCluster, start_cluster

#: the second node's fake boards
BOARDS = {"board:a": 1, "board:b": 1}


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
