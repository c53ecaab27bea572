"""Results store (SQLite or PostgreSQL), export/import and regression comparison."""

from edgebench.store.schema import SCHEMA_VERSION, StoreError
from edgebench.store.store import Store

__all__ = ["SCHEMA_VERSION", "Store", "StoreError"]
