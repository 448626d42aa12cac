"""Sharded, memory-mappable array stores with a manifest (cube sets and pattern sets).

Layout of a store folder::

    manifest.json            format, kind, item shape, dtype, shard list, completed units, attrs
    shard_00000.npy          (N, *item_shape) float16 or uint8 array (uint8 = round(value * 255))
    shard_00000.jsonl        one JSON record per item (provenance: patient, position, scale, label...)

Items are float32 in [0, 1] when read. Shards are written atomically (temporary file, then rename) and
the manifest is rewritten atomically *after* its shard files exist, so a process killed at any moment
leaves a store that opens and contains exactly the shards listed in its manifest. Writers record
"units" (e.g. a scan id) as completed together with their shard, which is what makes generation
resumable: :meth:`ShardWriter.completed_units` tells a restarted job what to skip.

A store whose writer has not called :meth:`ShardWriter.finish` (an interrupted ``cubes`` or
``discover`` run: ``"complete": false`` in the manifest) is refused by :class:`ShardedArray` unless
``require_complete=False``: training on it would silently use part of the data. The error names the
missing scans and the command that completes the store.

Readers parse each shard's ``.npy`` header once and then read single items with ``os.pread`` at their
byte offset. Nothing is memory-mapped, so a DataLoader worker's resident memory (RSS) holds only the
items of the current batch, whatever the store size (with ``mmap`` the touched pages of a 7 GB
pattern set would count towards RSS); the operating system's page cache still speeds up re-reads.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from semantic_genesis.errors import DataError
from semantic_genesis.utils.atomic import atomic_open, write_json

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_DTYPES = ("float16", "uint8")


_BLOCK = 256  # items encoded / checked at a time: temporaries of one block, not of a whole unit


def _encode(items: np.ndarray, dtype: str) -> np.ndarray:
    out = np.empty(items.shape, np.float16 if dtype == "float16" else np.uint8)
    for start in range(0, len(items), _BLOCK):
        block = items[start : start + _BLOCK]
        out[start : start + _BLOCK] = block if dtype == "float16" else np.clip(np.rint(block * 255.0), 0, 255)
    return out


def _all_finite(items: np.ndarray) -> bool:
    return all(bool(np.isfinite(items[s : s + _BLOCK]).all()) for s in range(0, len(items), _BLOCK))


def _decode(items: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "float16":
        return items.astype(np.float32)
    return items.astype(np.float32) / np.float32(255.0)


class ShardWriter:
    """Append items to a store, one shard per :meth:`add_unit` batch or ``shard_size`` items.

    Args:
        root: the store folder (created if missing; an existing store is resumed).
        kind: what the store holds, e.g. ``"cubes"`` or ``"patterns"`` (checked on resume).
        item_shape: shape of one item, e.g. ``(1, 64, 64, 32)``.
        dtype: ``"float16"`` or ``"uint8"``.
        attrs: free metadata saved in the manifest (e.g. the resolved config).

    Raises:
        DataError: the folder holds a store of another kind, shape or dtype.
    """

    def __init__(
        self,
        root: str | Path,
        kind: str,
        item_shape: Sequence[int],
        dtype: str = "float16",
        attrs: dict[str, Any] | None = None,
    ):
        if dtype not in _DTYPES:
            raise DataError(f"shard dtype must be one of {_DTYPES}, got {dtype!r}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.kind = kind
        self.item_shape = tuple(int(s) for s in item_shape)
        self.dtype = dtype
        path = self.root / MANIFEST
        if path.exists():
            manifest = read_manifest(self.root)
            for key, expected in (("kind", kind), ("item_shape", list(self.item_shape)), ("dtype", dtype)):
                if manifest[key] != expected:
                    raise DataError(
                        f"{path}: existing store has {key}={manifest[key]!r}, this run wants {expected!r}; "
                        "use another output folder or delete the old store"
                    )
            self.manifest = manifest
            if attrs:
                self.manifest["attrs"].update(attrs)
        else:
            self.manifest = {
                "format_version": FORMAT_VERSION,
                "kind": kind,
                "item_shape": list(self.item_shape),
                "dtype": dtype,
                "shards": [],
                "completed_units": [],
                "complete": False,
                "attrs": dict(attrs or {}),
            }
            self._write_manifest()
        self._remove_orphans()

    # ------------------------------------------------------------------------------------------
    def completed_units(self) -> set[str]:
        """Units (e.g. scan ids) whose items are safely on disk."""
        return set(self.manifest["completed_units"])

    def add_unit(self, unit: str, items: np.ndarray, records: Sequence[dict[str, Any]], split: str = "train") -> None:
        """Write the items of one unit as a new shard and mark the unit complete (atomically).

        Args:
            unit: identifier of the work unit (scan id, reference id...); must be new.
            items: ``(N, *item_shape)`` float array with values in [0, 1] (N may be 0).
            records: N JSON-serialisable dicts (provenance), one per item.
            split: ``"train"``, ``"validation"`` or ``"test"``.
        """
        items = np.asarray(items)
        if unit in self.completed_units():
            raise DataError(f"{self.root}: unit {unit!r} was already written")
        if items.ndim != 1 + len(self.item_shape) or tuple(items.shape[1:]) != self.item_shape:
            raise DataError(
                f"{self.root}: items of unit {unit!r} have shape {tuple(items.shape)}, "
                f"expected (N, {', '.join(map(str, self.item_shape))})"
            )
        if len(records) != len(items):
            raise DataError(f"{self.root}: {len(items)} items but {len(records)} records for unit {unit!r}")
        if len(items) and not _all_finite(items):
            raise DataError(f"{self.root}: unit {unit!r} has NaN or infinite values")
        if len(items):
            index = len(self.manifest["shards"])
            name = f"shard_{index:05d}"
            with atomic_open(self.root / f"{name}.npy", "wb") as handle:
                np.save(handle, _encode(items, self.dtype))
            with atomic_open(self.root / f"{name}.jsonl", "w") as handle:
                for record in records:
                    handle.write(json.dumps({**record, "unit": unit}) + "\n")
            self.manifest["shards"].append({"name": name, "count": int(len(items)), "split": split, "unit": unit})
        self.manifest["completed_units"].append(unit)
        self._write_manifest()

    def finish(self, **attrs: Any) -> None:
        """Mark the store complete (and add final attrs such as counts)."""
        self.manifest["attrs"].update(attrs)
        self.manifest["complete"] = True
        self._write_manifest()

    # ------------------------------------------------------------------------------------------
    def _write_manifest(self) -> None:
        write_json(self.root / MANIFEST, self.manifest)

    def _remove_orphans(self) -> None:
        """Delete shard files a killed run wrote but never listed in the manifest."""
        listed = {s["name"] for s in self.manifest["shards"]}
        for path in self.root.glob("shard_*"):
            if path.name.split(".")[0] not in listed:
                path.unlink()
        for path in self.root.glob(".shard_*"):
            path.unlink()


def read_manifest(root: str | Path) -> dict[str, Any]:
    """Read and validate a store's manifest."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise DataError(f"{path}: no manifest; {root} is not a cube/pattern store")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: corrupt manifest ({exc})") from None
    for key in ("kind", "item_shape", "dtype", "shards"):
        if key not in manifest:
            raise DataError(f"{path}: manifest lacks {key!r}")
    return manifest


#: The command that completes an interrupted store, per kind (``{source}``, ``{root}`` and ``{run}``, the
#: folder above the store, are filled in). A writer may instead record ``attrs["resume_command"]``.
_COMPLETE_WITH = {
    "cubes": "semantic-genesis cubes --data {source} --out {root}",
    "patterns": "semantic-genesis discover data={source} out={run}",
}


def incomplete_problem(root: str | Path, manifest: dict[str, Any]) -> str | None:
    """Why a store is not usable yet (``None`` when its manifest says ``complete``).

    Names the work units still missing when the manifest can tell them (cube sets record every
    patient in ``attrs["planned"]``), how many are done, and the command that completes the store.
    """
    if manifest.get("complete"):
        return None
    root = Path(root)
    attrs = manifest.get("attrs") or {}
    done = list(manifest.get("completed_units") or [])
    kind = manifest.get("kind", "store")
    what = {"cubes": "cube set", "patterns": "pattern set"}.get(kind, f"{kind} store")
    planned = attrs.get("planned") if isinstance(attrs.get("planned"), list) else None
    if planned:
        finished = {u.split("/", 1)[0] for u in done}
        missing = sorted(p for p in planned if p not in finished)
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        progress = f"{len(planned) - len(missing)} of {len(planned)} scans done" + (f"; missing: {shown}" if missing else "")
    elif attrs.get("num_classes"):
        classes = {u[: -len("_val")] if u.endswith("_val") else u for u in done}  # class_00003(_val)
        progress = f"{len(classes)} of {attrs['num_classes']} classes written"
    else:
        progress = f"{len(done)} unit(s) written"
    command = attrs.get("resume_command") or _COMPLETE_WITH.get(kind, "").format(
        source=attrs.get("source") or "SCANS", root=root, run=root.parent
    )
    hint = f"; complete it with `{command}` and the same config (the rerun resumes)" if command else ""
    return f"{root}: the {what} is incomplete (its manifest says complete: false; {progress}){hint}"


@dataclass(frozen=True)
class _ShardFile:
    """An open shard: file descriptor and the layout of its ``.npy`` payload."""

    fd: int
    offset: int  # byte offset of item 0
    item_bytes: int
    dtype: np.dtype
    shape: tuple[int, ...]

    def read(self, row: int) -> np.ndarray:
        data = os.pread(self.fd, self.item_bytes, self.offset + row * self.item_bytes)
        if len(data) != self.item_bytes:
            raise OSError(f"short read of item {row} ({len(data)} of {self.item_bytes} bytes)")
        return np.frombuffer(data, dtype=self.dtype).reshape(self.shape[1:])


def _open_shard(path: Path) -> _ShardFile:
    """Open a C-ordered ``.npy`` shard and read its header (no item data is read)."""
    fmt = np.lib.format
    with open(path, "rb") as handle:
        version = fmt.read_magic(handle)
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read_header(handle)
        offset = handle.tell()
    if fortran:
        raise ValueError("Fortran-ordered array")
    item_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    expected = offset + item_bytes * shape[0]
    size = path.stat().st_size
    if size < expected:
        raise ValueError(f"file holds {size} bytes, its header promises {expected}")
    return _ShardFile(os.open(path, os.O_RDONLY), offset, item_bytes, dtype, tuple(shape))


@dataclass(frozen=True)
class _ShardRef:
    name: str
    count: int
    split: str


class ShardedArray:
    """Read-only view of the items of a store, optionally restricted to one split.

    ``store[i]`` returns ``(item, record)`` with ``item`` a float32 array in [0, 1] of ``item_shape``.
    Shard files are opened lazily per process (safe with DataLoader workers) and read item by item.

    Args:
        root: the store folder.
        split: one split name, several, or ``None`` for all items.
        kind: the expected store kind (``"cubes"``, ``"patterns"``), or ``None`` for any.
        require_complete: refuse a store whose writer never finished (an interrupted ``cubes`` or
            ``discover`` run); pass ``False`` only to look at a store being written.

    Raises:
        DataError: missing store, an incomplete store (names the missing scans and the command that
            completes it), missing shard file, or a shard whose shape disagrees with the manifest.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | Iterable[str] | None = None,
        kind: str | None = None,
        require_complete: bool = True,
    ):
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        if kind is not None and self.manifest["kind"] != kind:
            raise DataError(f"{self.root}: store holds {self.manifest['kind']!r}, expected {kind!r}")
        problem = incomplete_problem(self.root, self.manifest) if require_complete else None
        if problem:
            raise DataError(problem)
        splits = None if split is None else ({split} if isinstance(split, str) else set(split))
        self.item_shape = tuple(self.manifest["item_shape"])
        self.dtype = self.manifest["dtype"]
        self.shards = [
            _ShardRef(s["name"], int(s["count"]), s["split"])
            for s in self.manifest["shards"]
            if splits is None or s["split"] in splits
        ]
        for shard in self.shards:
            path = self.root / f"{shard.name}.npy"
            if not path.is_file():
                raise DataError(f"{path}: shard listed in the manifest is missing")
        self.offsets = np.cumsum([0] + [s.count for s in self.shards])
        self._files: dict[int, _ShardFile] = {}
        self._records: dict[int, list[dict[str, Any]]] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _file(self, k: int) -> _ShardFile:
        if self._pid != os.getpid():  # forked into a worker: open the files again there
            self._files, self._records, self._pid = {}, {}, os.getpid()
        if k not in self._files:
            shard = self.shards[k]
            path = self.root / f"{shard.name}.npy"
            try:
                opened = _open_shard(path)
            except (ValueError, OSError) as exc:
                raise DataError(f"{path}: unreadable shard ({exc})") from None
            if opened.shape != (shard.count, *self.item_shape):
                os.close(opened.fd)
                raise DataError(
                    f"{path}: shard has shape {opened.shape}, manifest says ({shard.count}, "
                    f"{', '.join(map(str, self.item_shape))})"
                )
            self._files[k] = opened
        return self._files[k]

    def close(self) -> None:
        """Close the open shard files (they reopen on the next read)."""
        for opened in self._files.values():
            os.close(opened.fd)
        self._files = {}

    def __del__(self) -> None:
        if getattr(self, "_pid", None) == os.getpid():
            for opened in getattr(self, "_files", {}).values():
                try:
                    os.close(opened.fd)
                except OSError:
                    pass

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_files"] = {}  # file descriptors do not travel to spawned workers
        return state

    def records(self, k: int) -> list[dict[str, Any]]:
        """The provenance records of shard ``k``."""
        if k not in self._records:
            path = self.root / f"{self.shards[k].name}.jsonl"
            if not path.is_file():
                raise DataError(f"{path}: records of a listed shard are missing")
            self._records[k] = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
        return self._records[k]

    def locate(self, index: int) -> tuple[int, int]:
        """(shard number, row) of item ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a store of {len(self)} items")
        k = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return k, int(index - self.offsets[k])

    def item(self, index: int) -> np.ndarray:
        """Item ``index`` as float32 in [0, 1]."""
        k, row = self.locate(index)
        try:
            raw = self._file(k).read(row)
        except OSError as exc:
            raise DataError(f"{self.root / self.shards[k].name}.npy: unreadable item {row} ({exc})") from None
        return _decode(raw, self.dtype)

    def record(self, index: int) -> dict[str, Any]:
        """Provenance record of item ``index``."""
        k, row = self.locate(index)
        return self.records(k)[row]

    def all_records(self) -> list[dict[str, Any]]:
        """Every record in item order (reads the small JSONL files, not the arrays)."""
        out: list[dict[str, Any]] = []
        for k in range(len(self.shards)):
            out.extend(self.records(k))
        return out

    def __getitem__(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        return self.item(index), self.record(index)
