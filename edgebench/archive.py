"""Compressed artifacts: the size an artifact takes shipped to a device, in an encoding that really loads back.

Unstructured sparsity leaves the artifact's size on disk unchanged - a zero takes 4 bytes in a dense fp32
tensor - but long runs of zero bytes compress well. The encoding is a standard ZIP archive (DEFLATE, level 9)
of the artifact file or directory: what an app bundle or an over-the-air update ships, and what
any unzip turns back into the byte-identical artifact a runtime loads.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

#: the encoding recorded with every compressed size
ENCODING = "zip-deflate-9"


def _members(path: Path) -> list[tuple[Path, str]]:
    """(file, name in the archive) of a file artifact or every file of a directory artifact."""
    if path.is_dir():
        return [(p, str(Path(path.name) / p.relative_to(path))) for p in sorted(path.rglob("*")) if p.is_file()]
    return [(path, path.name)]


def compress_artifact(path: Path) -> bytes:
    """The ZIP archive (DEFLATE level 9) of the artifact at ``path``, in memory."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for file, name in _members(path):
            archive.write(file, name)
    return buffer.getvalue()


def artifact_size(path: Path) -> int:
    """Bytes on disk of a file or a directory artifact."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def compressed_size(path: Path) -> int:
    """Bytes of the artifact's ZIP archive."""
    return len(compress_artifact(path))

