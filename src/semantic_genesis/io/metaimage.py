"""Checks of a MetaImage (``.mhd`` + data file, or ``.mha``) header before ITK reads it.

ITK reports a missing or short ``.raw`` file as "File cannot be read: scan.mhd ... No such file or
directory", naming the header instead of the data file. :func:`check_metaimage` reads the text
header itself (``key = value`` lines up to ``ElementDataFile``) and raises an
:class:`~semantic_genesis.errors.ImageReadError` that names the data file and the byte counts.
Headers it does not understand (file lists, compressed or ASCII data) are left to ITK.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from semantic_genesis.errors import ImageReadError
from semantic_genesis.io.paths import unreadable_reason

#: Bytes per channel of the MetaIO element types (MetaIO ``metaTypes.h``); ``MET_LONG`` is left out
#: on purpose (its size is platform dependent in older writers).
ELEMENT_BYTES = {
    "MET_CHAR": 1,
    "MET_UCHAR": 1,
    "MET_SHORT": 2,
    "MET_USHORT": 2,
    "MET_INT": 4,
    "MET_UINT": 4,
    "MET_LONG_LONG": 8,
    "MET_ULONG_LONG": 8,
    "MET_FLOAT": 4,
    "MET_DOUBLE": 8,
}
_MAX_HEADER_BYTES = 65536


def read_header(path: Path) -> tuple[dict[str, str], int] | None:
    """``(fields, data_offset)`` of a MetaImage header; ``None`` if it is not a text header.

    ``data_offset`` is the byte just after the ``ElementDataFile`` line (where ``LOCAL`` data starts).
    """
    with open(path, "rb") as handle:
        head = handle.read(_MAX_HEADER_BYTES)
    fields: dict[str, str] = {}
    offset = 0
    for raw in head.splitlines(keepends=True):
        offset += len(raw)
        try:
            line = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            return None
        if not line:
            continue
        if "=" not in line:
            return None
        key, value = (part.strip() for part in line.split("=", 1))
        fields[key] = value
        if key == "ElementDataFile":
            return fields, offset
    return None


def expected_data_bytes(fields: dict[str, str]) -> int | None:
    """Bytes of voxel data the header promises (``None`` when that cannot be known in advance)."""
    if fields.get("CompressedData", "False").lower() == "true":
        return None
    if fields.get("BinaryData", "True").lower() == "false":
        return None
    size = ELEMENT_BYTES.get(fields.get("ElementType", ""))
    try:
        dims = [int(v) for v in fields.get("DimSize", "").split()]
        channels = int(fields.get("ElementNumberOfChannels", "1"))
    except ValueError:
        return None
    if size is None or not dims:
        return None
    return int(np.prod(dims, dtype=np.int64)) * channels * size


def check_metaimage(path: Path) -> tuple[int, ...] | None:
    """Raise :class:`ImageReadError` for a MetaImage whose data file is missing or short.

    Args:
        path: the ``.mhd`` or ``.mha`` file.

    Returns:
        The header's ``DimSize`` (``None`` when the header is not a text header ITK would read); the
        caller rejects a zero in it before ITK allocates anything.

    Raises:
        ImageReadError: the data file is missing, a broken symlink or a symlink loop (names the data
            file), or it holds fewer bytes than ``DimSize`` x channels x element size (names the data
            file, the expected and the found byte counts).
    """
    parsed = read_header(path)
    if parsed is None:
        return None
    fields, offset = parsed
    try:
        dims = tuple(int(v) for v in fields.get("DimSize", "").split())
    except ValueError:
        return None
    if 0 in dims:
        return dims
    name = fields["ElementDataFile"]
    expected = expected_data_bytes(fields)
    if name.upper() == "LOCAL":
        if expected is not None:
            found = path.stat().st_size - offset
            if found < expected:
                raise ImageReadError(
                    path, f"truncated voxel data: expected {expected} bytes after the header, found {found}"
                )
        return dims
    if name.upper() == "LIST" or "%" in name:
        return dims  # a list of slice files: ITK checks them
    data = Path(name) if Path(name).is_absolute() else path.parent / name
    reason = unreadable_reason(data)
    if reason is not None:
        raise ImageReadError(data, f"data file of {path.name} cannot be read: {reason}")
    if expected is None:
        return dims
    header_size = fields.get("HeaderSize", "0")
    skip = int(header_size) if header_size.lstrip("-").isdigit() and int(header_size) > 0 else 0
    found = data.stat().st_size - skip
    if found < expected:
        dims_text = " x ".join(map(str, dims))
        raise ImageReadError(
            data,
            f"data file of {path.name} is truncated: expected {expected} bytes "
            f"({dims_text} voxels of {fields.get('ElementType')}), found {found}",
        )
    return dims
