"""The torch ``Dataset`` over a shard store (:mod:`semantic_genesis.io.shards`): :class:`StoreDataset`.

Cube sets (``semantic-genesis cubes``), pattern sets (``semantic-genesis discover``) and the scans
of self-discovery are shard stores; methods read them through this dataset. Shards are
memory-mapped, so the memory of a data pipeline does not grow with the size of the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from semantic_genesis.errors import DataError
from semantic_genesis.io.shards import ShardedArray


class StoreDataset(Dataset):
    """Items of a shard store (cube, pattern or scan set) as dict samples.

    Args:
        root: the store folder (``manifest.json`` + shards).
        split: ``"train"``, ``"validation"``, ``"test"``, several of them, or ``None`` for all.
        kind: expected store kind (``"cubes"``, ``"patterns"``, ...) or ``None`` for any.
        with_labels: include ``"label"`` (int64) read from each record's ``"label"`` field;
            ``None`` = when the first record has one.

    A sample is ``{"image": float32 tensor (C, X, Y, Z) in [0, 1], "index": int, ["label": int]}``.

    Raises:
        DataError: missing/corrupt store, or labels requested but missing in a record.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | list[str] | None = "train",
        kind: str | None = None,
        with_labels: bool | None = None,
    ):
        self.root = Path(root)
        self.split = split
        self.store = ShardedArray(self.root, split=split, kind=kind)
        self.item_shape = tuple(self.store.item_shape)
        if with_labels is None:
            with_labels = len(self.store) > 0 and "label" in self.store.record(0)
        self.with_labels = bool(with_labels)

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.store.item(int(index))
        sample: dict[str, Any] = {"image": torch.from_numpy(np.ascontiguousarray(item, dtype=np.float32)), "index": int(index)}
        if self.with_labels:
            record = self.store.record(int(index))
            if "label" not in record:
                raise DataError(f"{self.root}: item {index} (split {self.split}) has no 'label' in its record")
            sample["label"] = int(record["label"])
        return sample

    def patients_seen(self):
        """The patients behind this dataset (:class:`semantic_genesis.provenance.PatientSource`): the
        manifest's ``split_patients`` of its split(s) (the cohort the set was built from: a pattern set
        crops only some patients, but its classes come from all of them) together with the ``patient``
        of every record; ``None`` when the store records neither (then weights trained on it cannot be
        checked for leakage)."""
        from semantic_genesis.provenance import PatientSource

        attrs = self.store.manifest.get("attrs") or {}
        by_split = attrs.get("split_patients")
        from_records = [r.get("patient") for r in self.store.all_records()]
        if not isinstance(by_split, dict) and (not from_records or None in from_records):
            return None  # an item of unknown patient
        patients = {str(p) for p in from_records if p is not None}
        if isinstance(by_split, dict):
            wanted = list(by_split) if self.split is None else [self.split] if isinstance(self.split, str) else list(self.split)
            patients |= {str(p) for name in wanted for p in by_split.get(name, [])}
        return PatientSource(str(self.root), sorted(patients), attrs.get("split_rule"))
