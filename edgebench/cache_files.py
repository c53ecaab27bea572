"""Cache files that several processes may write at once: two runs in one directory, Ray nodes on a shared disk.

Every writer writes under a temporary name of its own (process id and a random part) and renames it into
place, so a reader sees either nothing or a whole file, and two writers never trip over each other's
temporary file. An artifact that must be built in place (it embeds its own path) is built holding a lock
file, so a second process waits and then finds it done instead of deleting a half-built project.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

#: written last into a directory artifact: a directory without it is a half-built export
COMPLETE_MARKER = ".edgebench-complete"


def temporary_sibling(path: Path) -> Path:
    """A hidden name beside ``path`` that no other writer uses, keeping the suffix (``np.savez`` adds ``.npz``
    to a name without it)."""
    return path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{path.suffix}")


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; when the block succeeds it replaces ``path`` atomically, else it is removed.
    Files written beside it under its name plus a suffix (TensorRT's ``<engine>.json``) go along, as ``path``'s."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)

    def sidecars() -> list[Path]:
        return list(tmp.parent.glob(glob.escape(tmp.name) + ".*"))

    try:
        yield tmp
        for sidecar in sidecars():
            os.replace(sidecar, path.with_name(path.name + sidecar.name[len(tmp.name):]))
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is not None or exc.errno is None:
            raise
        # a write() that met a full disk names no file, and the one-line error said "cannot write a file"
        raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        for sidecar in sidecars():
            sidecar.unlink(missing_ok=True)


def lock_file(path: Path) -> Path:
    """The lock file that stands for ``path``."""
    return path.with_name(f".{path.name}.lock")


def try_lock(path: Path) -> IO[str] | None:
    """An exclusive lock on ``path``'s lock file, held until the returned handle is closed (or its process dies);
    None when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_file(path), "a")  # noqa: SIM115 - the caller holds it as long as the lock
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path``'s lock file (``.<name>.lock`` beside it) for the block; waits for it.

    The kernel drops the lock when its process dies, so a killed build never leaves ``path`` locked.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file(path), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def digest_path(path: Path) -> Path:
    """Where a cached file's sha256, written when it was built, is kept."""
    return path.with_name(path.name + ".sha256")


def write_digest(path: Path) -> None:
    """Write ``path``'s sha256 beside it (:func:`digest_path`)."""
    from edgebench.plugins import content_digest

    digest_path(path).write_text(content_digest(path) + "\n")


def digest_matches(path: Path) -> bool:
    """Whether ``path`` still holds what was written: its sha256 is the one written then (a file cached before
    digests were written, without one, is taken as it is)."""
    from edgebench.plugins import content_digest

    digest = digest_path(path)
    return not digest.is_file() or digest.read_text().strip() == content_digest(path)
