"""Several processes opening one new (or old) store at the same moment: the schema is created or migrated once.

Two ``edgebench run`` on a shared PostgreSQL store both find no tables and both create them; both find an
old version and both run the same ALTER TABLE. Here real processes meet at a file barrier, then all call
``Store.open`` at once, for several rounds against the real PostgreSQL server the tests start and a SQLite file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from sqlalchemy import create_engine, make_url, text
from store_fixtures import make_foundation_store

from edgebench.store import SCHEMA_VERSION

PROCESSES = 4
ROUNDS = 4

#: each process imports once, then per round: announce itself, wait for the others, open the store
OPENER = textwrap.dedent("""
    import pathlib, sys, time
    from edgebench.store import Store

    barrier, me, n, urls = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    for round_, url in enumerate(urls):
        (barrier / f"{round_}-{me}").touch()
        while len(list(barrier.glob(f"{round_}-*"))) < n:
            time.sleep(0.002)
        try:
            Store.open(url).close()
            print(f"round {round_}: ok", flush=True)
        except Exception as exc:
            print(f"round {round_}: {type(exc).__name__}: {str(exc).splitlines()[0]}", flush=True)
""")


def open_at_once(urls: list[str], tmp: Path) -> list[str]:
    """Lines ``round R: ok`` or the error, from PROCESSES processes opening each of ``urls`` at the same moment."""
    barrier = tmp / "barrier"
    barrier.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    procs = [
        subprocess.Popen([sys.executable, "-c", OPENER, str(barrier), str(i), str(PROCESSES), *urls],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for i in range(PROCESSES)
    ]
    return [line for p in procs for line in p.communicate(timeout=240)[0].splitlines()]


def versions(url: str) -> list[int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = list(conn.execute(text("select version from schema_version order by version")).scalars())
    engine.dispose()
    return found


def test_postgres_schema_created_and_migrated_once_under_concurrency(postgres_url: str, tmp_path: Path) -> None:
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    urls = []
    with admin.connect() as conn:
        for i in range(2 * ROUNDS):
            name = f"race_{os.getpid()}_{i}"
            conn.execute(text(f"drop database if exists {name}"))
            conn.execute(text(f"create database {name}"))
            urls.append(make_url(postgres_url).set(database=name).render_as_string(hide_password=False))
    try:
        for url in urls[ROUNDS:]:  # the second half race to migrate an old store
            make_foundation_store(url)
        lines = open_at_once(urls, tmp_path)
        assert sorted(line for line in lines if line.startswith("round")) == sorted(
            f"round {r}: ok" for r in range(2 * ROUNDS) for _ in range(PROCESSES)), lines
        # each step applied is said once, by the process that applied it
        assert sum("schema upgraded" in line for line in lines) == ROUNDS * (SCHEMA_VERSION - 1), lines
        for url in urls[:ROUNDS]:
            assert versions(url) == [SCHEMA_VERSION]
        for url in urls[ROUNDS:]:
            assert versions(url) == list(range(1, SCHEMA_VERSION + 1))  # each step applied exactly once
    finally:
        with admin.connect() as conn:
            for url in urls:
                conn.execute(text(f"drop database if exists {make_url(url).database} with (force)"))
        admin.dispose()


def test_sqlite_schema_created_and_migrated_once_under_concurrency(tmp_path: Path) -> None:
    paths = [tmp_path / f"new-{i}.db" for i in range(ROUNDS)] + [tmp_path / f"old-{i}.db" for i in range(ROUNDS)]
    urls = [f"sqlite:///{p}" for p in paths]
    for url in urls[ROUNDS:]:
        make_foundation_store(url)
    lines = open_at_once(urls, tmp_path)
    assert sorted(line for line in lines if line.startswith("round")) == sorted(
        f"round {r}: ok" for r in range(2 * ROUNDS) for _ in range(PROCESSES)), lines
    assert sum("schema upgraded" in line for line in lines) == ROUNDS * (SCHEMA_VERSION - 1), lines
    assert all(versions(url) == [SCHEMA_VERSION] for url in urls[:ROUNDS])
    assert all(versions(url) == list(range(1, SCHEMA_VERSION + 1)) for url in urls[ROUNDS:])

