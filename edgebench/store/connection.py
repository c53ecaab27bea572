"""Opening a results store's database: its URL (a file path as a SQLite URL, a password hidden in messages, the
file a SQLite URL names), the SQLAlchemy engine (SQLite's pragmas, PostgreSQL's pre-ping), and the database errors
met while it is in use, each turned into one StoreError line saying what to do. ``store.Store`` opens with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import Engine, ExceptionContext, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from edgebench.errors import first_line
from edgebench.paths import why_unwritable
from edgebench.store.schema import StoreError


def shown_url(url: str) -> str:
    """``url`` as messages and logs show it: a database password as ``***`` (CI logs are read by many)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def store_url(url_or_path: str | Path) -> str:
    """Turn a file path into a SQLite URL; URLs pass through unchanged."""
    text = str(url_or_path)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


def absolute_store_url(url_or_path: str | Path) -> str:
    """:func:`store_url`, a relative SQLite file (a path, or ``sqlite:///runs/x.db``) made absolute from the working
    directory: the same store after a chdir."""
    url = store_url(url_or_path)
    file = sqlite_file(url)
    return store_url(file) if file is not None and not file.is_absolute() else url


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names; None for an in-memory or a server database. A SQLite URI filename
    (``sqlite:///file:/path/x.db?mode=ro&uri=true``) names ``/path/x.db``, not a directory called ``file:``."""
    if not url.startswith("sqlite"):
        return None
    database = make_url(url).database
    if database and database.startswith("file:"):
        database = urlparse(database).path
    if not database or database == ":memory:":
        return None
    return Path(database)


def _make_engine(url: str) -> Engine:
    try:
        if url.startswith("sqlite"):
            path = sqlite_file(url)
            if path is not None:
                _make_parent(path)
                engine = create_engine(url, connect_args={"timeout": 30})
            else:  # in-memory: one shared connection or every connection sees an empty database
                engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "handle_error", _store_problem)
            return engine
        engine = create_engine(url, pool_pre_ping=True)
        event.listen(engine, "handle_error", _store_problem)
        return engine
    except (ArgumentError, ModuleNotFoundError) as exc:
        raise StoreError(f"cannot open store {shown_url(url)!r}: {exc}") from exc


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        raise StoreError(f"cannot create the store {path}: {why_unwritable(path.parent)}") from None


#: database errors met while a store is in use (SQLite's and PostgreSQL's words for them), with what happened to it
#: and what to do: one StoreError line each instead of a traceback (the statement was rolled back)
_STORE_PROBLEMS = {
    "readonly database": "cannot write to it: make the file and its directory writable, or copy the store to a "
                         "writable place; the write was rolled back and what was stored before stands",
    # a write needs a journal file beside the database: an unwritable (or immutable) directory refuses it so
    "unable to open database file": "cannot write to it or the journal file beside it: make the file and its "
                                    "directory writable (chattr -i, chmod), or copy the store to a writable place; "
                                    "the write was rolled back, what was stored before stands, and the same command "
                                    "resumes",
    "disk is full": "cannot write to it: free space on its filesystem; the write was rolled back, what was stored "
                    "before stands, and the same command resumes",
    "disk I/O error": "cannot write to it: check the filesystem it is on; the write was rolled back and what was "
                      "stored before stands",
    "database is locked": "another process held it locked past the 30 s wait (a long read or a stuck writer); what "
                          "it holds is unchanged, and the same command resumes",
    "database disk image is malformed": "the file is damaged: restore a copy (sqlite3's .recover salvages what it "
                                        "can)",
    "server closed the connection": "the database server went away: what was stored stands, and the same command "
                                    "resumes once it is back",
    "terminating connection": "the database server ended the connection: what was stored stands, and the same "
                              "command resumes once it is back",
}


def _store_problem(context: ExceptionContext) -> None:
    """A database error with a known cause becomes one StoreError line naming the store and what to do. Not when
    the pool pings a connection before use: a connection the server dropped while idle is replaced there."""
    if context.is_pre_ping:
        return
    reason = first_line(context.original_exception)
    fix = next((fix for needle, fix in _STORE_PROBLEMS.items() if needle in reason), None)
    engine_url = context.engine.url if context.engine else None
    opened = context.connection is not None  # None while connecting: a file not there yet was never open
    if fix is not None and opened and engine_url is not None and (file := _sqlite_file(engine_url)) and not file.exists():
        fix = ("the file was deleted or moved while it was open (its run directory removed?): what this process "
               "wrote there is gone with it; put it back, or run again to start a new store")
    if fix is not None:
        where = engine_url.render_as_string(hide_password=True) if engine_url is not None else "results store"
        raise StoreError(f"store {where}: {reason}: {fix}")


def _sqlite_file(url: Any) -> Path | None:
    """The file a SQLite URL opens (``file:...?mode=ro`` URI form too); None for another database or memory."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database.removeprefix("file:").split("?")[0])


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
