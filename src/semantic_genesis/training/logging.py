"""Run logs: ``metrics.jsonl`` (always), TensorBoard (when installed) and a tqdm progress bar.

Every line of ``metrics.jsonl`` is one JSON object with a ``"kind"``:

* ``"train"``: ``step`` (optimiser steps done), ``epoch``, ``loss`` and the method's metrics averaged
  over the last ``train.log_every`` steps, ``lr``, ``cubes_per_s`` (items per second over the window,
  all ranks), ``data_wait`` (fraction of the window's wall time spent waiting for the data loader),
  ``time`` (seconds since the run, or its resumed part, started);
* ``"validation"``: ``step``, ``epoch``, ``loss`` and metrics over the fixed validation set,
  ``best`` (monitored value so far), ``improved``, ``bad_epochs``;
* ``"event"``: ``event`` (``start``, ``resume``, ``early_stop``, ``nonfinite``, ``done``) and details
  (``start`` and ``resume`` name the resolved ``transforms_on``).

On resume the lines written after the checkpoint's step are dropped (they will be produced again),
so an interrupted-and-resumed run leaves the same training records as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from semantic_genesis.utils.atomic import write_text


class MetricsLogger:
    """Append JSON records to ``<run>/metrics.jsonl`` (and TensorBoard); a no-op off rank 0.

    Args:
        run_dir: the run folder.
        enabled: ``False`` on ranks other than 0.
        tensorboard: also write TensorBoard scalars to ``<run>/tensorboard`` if the package exists.
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        self._tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
            except (ImportError, ModuleNotFoundError):
                self._tb = None
        self._handle = None

    def truncate_after(self, step: int, epoch: int | None = None) -> None:
        """Drop what a resumed run will log again; rewrites the file atomically.

        Keeps records with ``step <= step``, except validation records of epochs ``>= epoch`` (a
        checkpoint taken at the last batch of an epoch precedes that epoch's validation).
        """
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill mid-write
                continue
            if int(record.get("step", 0)) > step:
                continue
            if epoch is not None and record.get("kind") == "validation" and int(record.get("epoch", -1)) >= epoch:
                continue
            kept.append(line)
        write_text(self.path, "".join(line + "\n" for line in kept))

    def log(self, record: dict[str, Any]) -> None:
        """Append one record (values are written exactly, so runs can be compared record by record)."""
        if not self.enabled:
            return
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")
        self._handle.write(json.dumps(record, default=_plain) + "\n")
        self._handle.flush()
        if self._tb is not None and record.get("kind") in ("train", "validation"):
            for key, value in record.items():
                if key in ("kind", "step", "epoch") or not isinstance(value, (int, float)) or isinstance(value, bool):
                    continue
                if math.isfinite(value):
                    self._tb.add_scalar(f"{record['kind']}/{key}", value, record["step"])

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _plain(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def read_metrics(run_dir: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The records of ``<run>/metrics.jsonl`` (optionally only one ``kind``)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if kind is None or record.get("kind") == kind:
            records.append(record)
    return records


def progress_bar(total: int, initial: int, enabled: bool, desc: str = "pretrain"):
    """A tqdm bar over optimiser steps (disabled: an object with the same no-op methods)."""
    from tqdm.auto import tqdm

    return tqdm(total=total or None, initial=initial, disable=not enabled, desc=desc, unit="step", dynamic_ncols=True)
