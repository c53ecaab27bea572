"""A worker preload that takes a while to import and notes when it finished (read by the warm-up test)."""

from __future__ import annotations

import os
import time
from pathlib import Path

time.sleep(2.0)
if note := os.environ.get("EDGEBENCH_TEST_PRELOAD_NOTE"):
    Path(note).write_text(repr(time.time()))
