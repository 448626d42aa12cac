"""State-dict operations shared by the weights loader and the importers: renaming keys, checking that
every tensor is finite, and copying tensors into a model with a report of what was done.

* :func:`load_state_dict_into`: every key whose name and shape match (strict: all of them);
* :func:`load_parts`: the tensors of named parts of a network (e.g. the encoder blocks of a backbone,
  by its ``encoder_state_dict_prefixes``), each required part complete, for transfer learning;
* :func:`find_nonfinite` / :func:`check_finite`: NaN or infinite values in parameters **and buffers**
  (a diverged run can leave batch-norm ``running_var = inf`` while its loss is still finite).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from semantic_genesis.errors import CheckpointError

BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


@dataclass
class LoadReport:
    """What a load did.

    Attributes:
        loaded: model keys filled from the file.
        missing: model keys the file does not have, or that were not asked for (left as they were).
        unexpected: file keys the model does not have, or that were not asked for (ignored).
        skipped: file keys dropped on purpose before matching (importer filters, ``prefix_map``).
        mismatched: ``(key, file_shape, model_shape)`` for keys present in both with different shapes.
        warnings: disagreements between the file's metadata and the model (architecture, arguments).
        metadata: the file's metadata (empty for foreign checkpoints without any).
        model: the model the weights were loaded into.
    """

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    model: nn.Module | None = field(default=None, repr=False)

    @property
    def complete(self) -> bool:
        """True when every model key was loaded and nothing was left over or mismatched."""
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        """A few human-readable lines (counts and the first keys of each group)."""

        def first(keys: list[str], n: int = 3) -> str:
            return ", ".join(keys[:n]) + (f", ... (+{len(keys) - n})" if len(keys) > n else "")

        lines = [f"loaded {len(self.loaded)} tensors"]
        for name, keys in (("missing", self.missing), ("unexpected", self.unexpected), ("skipped", self.skipped)):
            if keys:
                lines.append(f"{name} {len(keys)}: {first(keys)}")
        for key, a, b in self.mismatched[:3]:
            lines.append(f"shape mismatch {key}: file {a} vs model {b}")
        if len(self.mismatched) > 3:
            lines.append(f"... {len(self.mismatched) - 3} more shape mismatches")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def count_parameters(state_dict: Mapping[str, torch.Tensor]) -> int:
    """Number of learnable values in a state dict (batch-norm running statistics excluded)."""
    return int(sum(t.numel() for k, t in state_dict.items() if not k.endswith(BUFFER_SUFFIXES)))


# --------------------------------------------------------------------------------------------------
# Finite values
# --------------------------------------------------------------------------------------------------
def find_nonfinite(state_dict: Mapping[str, torch.Tensor]) -> list[tuple[str, str]]:
    """``(key, what)`` for every floating-point tensor holding NaN or inf (``what``: ``"nan"``,
    ``"inf"`` or ``"nan and inf"``), in state-dict order."""
    bad = []
    for key, tensor in state_dict.items():
        if not (isinstance(tensor, torch.Tensor) and (tensor.is_floating_point() or tensor.is_complex())):
            continue
        if bool(torch.isfinite(tensor).all()):
            continue
        kinds = [k for k, test in (("nan", torch.isnan), ("inf", torch.isinf)) if bool(test(tensor).any())]
        bad.append((key, " and ".join(kinds)))
    return bad


def describe_nonfinite(bad: Sequence[tuple[str, str]]) -> str:
    """``"down_tr64.ops.0.bn1.running_var (inf), ... (+2 more)"``."""
    shown = ", ".join(f"{key} ({what})" for key, what in bad[:3])
    return shown + (f", ... (+{len(bad) - 3} more)" if len(bad) > 3 else "")


def check_finite(state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise :class:`CheckpointError` naming the tensors if any parameter or buffer is NaN or inf."""
    bad = find_nonfinite(state_dict)
    if bad:
        raise CheckpointError(
            f"{source}: {len(bad)} tensor(s) hold non-finite values: {describe_nonfinite(bad)}; these weights "
            "come from a diverged run (a lower learning rate, or an earlier checkpoint, will help)"
        )


# --------------------------------------------------------------------------------------------------
# Key renaming
# --------------------------------------------------------------------------------------------------
def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> tuple[dict[str, torch.Tensor], int]:
    """Remove a leading ``prefix`` (repeatedly, e.g. nested DataParallel) from every key.

    Returns:
        ``(new state dict, number of keys renamed)``.
    """
    out: dict[str, torch.Tensor] = {}
    renamed = 0
    for key, value in state_dict.items():
        new = key
        while new.startswith(prefix):
            new = new[len(prefix):]
        renamed += new != key
        if new in out:
            raise CheckpointError(f"key {new!r} occurs twice after removing the prefix {prefix!r}")
        out[new] = value
    return out, renamed


def apply_prefix_map(
    state_dict: Mapping[str, torch.Tensor], prefix_map: Mapping[str, str | None]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename key prefixes: ``{"old.": "new."}``; a value ``None`` drops the keys with that prefix.

    The longest matching prefix wins; ``""`` matches every key (e.g. ``{"": "backbone."}``).

    Returns:
        ``(renamed state dict, dropped keys)``.
    """
    prefixes = sorted(prefix_map, key=len, reverse=True)
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in state_dict.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                new = prefix_map[prefix]
                if new is None:
                    dropped.append(key)
                else:
                    out[new + key[len(prefix):]] = value
                break
        else:
            out[key] = value
    return out, dropped


# --------------------------------------------------------------------------------------------------
# Copying tensors into a model
# --------------------------------------------------------------------------------------------------
def load_state_dict_into(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool = True, source: str = "state dict"
) -> LoadReport:
    """Load every key of ``state_dict`` whose name and shape match ``model``; report the rest.

    Args:
        model: the target network.
        state_dict: tensors by key (after any renaming).
        strict: if True, any missing or unexpected key or any shape mismatch raises.
        source: how to name the origin in error messages (usually the file path).

    Raises:
        CheckpointError: (strict) the first shape mismatch with both shapes, or the missing/unexpected
            keys; (any mode) no key matched at all, which usually means a prefix problem.
    """
    target = model.state_dict()
    report = LoadReport(model=model)
    usable: dict[str, torch.Tensor] = {}
    for key, tensor in target.items():
        if key not in state_dict:
            report.missing.append(key)
            continue
        value = state_dict[key]
        if tuple(value.shape) != tuple(tensor.shape):
            report.mismatched.append((key, tuple(value.shape), tuple(tensor.shape)))
            continue
        usable[key] = value
    report.unexpected = [k for k in state_dict if k not in target]
    if strict and report.mismatched:
        key, a, b = report.mismatched[0]
        raise CheckpointError(
            f"{source}: shape mismatch at {key}: checkpoint {a} vs model {b} "
            f"({len(report.mismatched)} mismatching key(s); different width, channels or 2D/3D?)"
        )
    if strict and (report.missing or report.unexpected):
        parts = []
        if report.missing:
            parts.append(f"{len(report.missing)} missing key(s), first {report.missing[0]!r}")
        if report.unexpected:
            parts.append(f"{len(report.unexpected)} unexpected key(s), first {report.unexpected[0]!r}")
        raise CheckpointError(f"{source}: does not fit the model ({'; '.join(parts)}); use strict=False to load the matching keys")
    if not usable:
        raise CheckpointError(
            f"{source}: no key matches the model (file keys start with "
            f"{sorted({k.split('.')[0] for k in state_dict})[:5]}, model keys with "
            f"{sorted({k.split('.')[0] for k in target})[:5]}); a prefix_map may be needed"
        )
    model.load_state_dict(usable, strict=False)
    report.loaded = list(usable)
    return report


def _under(key: str, prefixes: Sequence[str]) -> bool:
    return any(key.startswith(prefix + ".") for prefix in prefixes)


def load_parts(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    required: Mapping[str, Sequence[str]],
    optional: Sequence[str] = (),
    source: str = "state dict",
    what: str = "the model",
) -> LoadReport:
    """Copy the tensors of named parts of ``model`` from ``state_dict`` (transfer learning).

    Args:
        model: the target network.
        state_dict: tensors by key, with the model's key names.
        required: part name -> top-level module names (e.g. ``{"encoder": backbone.encoder_state_dict_
            prefixes}``); every model tensor of these parts must be in ``state_dict``.
        optional: top-level module names whose tensors are copied where the file has them (e.g. a
            decoder, absent from encoder-only pretext weights).
        source: the file, for messages.
        what: what the model is for, for messages (``"task ncs"``).

    Returns:
        :class:`LoadReport`: ``loaded`` (model order), ``missing`` (model tensors left as they were:
        heads, new output layers), ``unexpected`` (file tensors not used, sorted).

    Raises:
        CheckpointError: a required tensor is missing, or a copied tensor has the wrong shape (one line
            naming the file and the tensor).
    """
    own = model.state_dict()
    report = LoadReport(model=model)
    wanted = [p for prefixes in required.values() for p in prefixes] + list(optional)
    updates: dict[str, torch.Tensor] = {}
    for key, value in own.items():
        if not _under(key, wanted) or key not in state_dict:
            report.missing.append(key)
            continue
        src = state_dict[key]
        if tuple(src.shape) != tuple(value.shape):
            raise CheckpointError(
                f"{source}: tensor {key} has shape {tuple(src.shape)}, the network for {what} expects {tuple(value.shape)}"
            )
        updates[key] = src.to(dtype=value.dtype)
        report.loaded.append(key)
    for part, prefixes in required.items():
        lacking = [k for k in own if _under(k, prefixes) and k not in updates]
        if lacking:
            raise CheckpointError(
                f"{source}: the file lacks {len(lacking)} {part} tensor(s) of the network (e.g. {lacking[0]}); "
                f"it does not fit {what}"
            )
    model.load_state_dict(updates, strict=False)
    report.unexpected = sorted(k for k in state_dict if k not in updates)
    return report
