"""Transform presets: the Models Genesis and Semantic Genesis recipes and single-transform ablations.

``build_preset(name, spatial_dims=None, **overrides)`` returns a :class:`Preset`, a callable
``preset(x, generator=None) -> (input, target)`` on float tensors in [0, 1] on any device. Overrides are
plain keyword arguments (so they come straight from the YAML ``transforms.overrides`` mapping); unknown
keys raise :class:`~semantic_genesis.errors.ConfigError` listing the valid ones.

Shapes (the batch contract of every transform): with ``spatial_dims=None`` the preset takes batches
``(B, C, X, Y, Z)`` only. With ``spatial_dims=3`` (or 2) it takes batches ``(B, C, *spatial)`` and single
samples ``(C, *spatial)``; a sample gives exactly ``preset(x[None])`` without the batch axis. A 4D
tensor without ``spatial_dims`` is refused: it could be a 2D batch or one 3D sample.

Presets (Zhou et al., "Models Genesis", MedIA 2021; Haghighi et al., "Semantic Genesis", MICCAI 2020):

* ``"models_genesis"`` (the official Models Genesis ``utils.py`` ``generate_pair``), per sample in this
  order: flip input and target together (p 0.4, up to 3 times, all spatial axes); local shuffle (p 0.5, 10,000 windows); non-linear (p 0.9);
  painting (p 0.9): in-painting with p 0.2, else out-painting. Target = the flipped original.
  P(input == target) = 0.5 * 0.1 * 0.1 = 0.5%.
* ``"semantic_genesis"`` (the official Semantic Genesis PyTorch ``luna_loader``): target = the original; input = elastic deformation
  (alpha 991, sigma 8; ``elastic=False`` turns it off), then **exactly one** of local shuffle,
  non-linear, in-painting, out-painting with p 0.25 each, at the Semantic Genesis code's strengths
  (5 shuffle windows, one noise-filled in-painting window, one out-painting window).
  ``strength="models_genesis"`` uses the Models Genesis strengths instead (10,000 windows, up to 5
  in-painting windows, 1 + up to 4 out-painting windows).
* ``"nonlinear"``, ``"local_shuffle"``, ``"inpaint"``, ``"outpaint"`` (the transform on every sample,
  Models Genesis strengths) and ``"identity"`` for ablations. Target = the original.

Presets are registered by name in :data:`PRESETS` (a :class:`~semantic_genesis.utils.registry.Registry`
of :class:`PresetSpec`: option defaults and the function that runs the recipe).

Samples that a stage does not select are not touched by it; each stage runs once on the selected
sub-batch. On float32/float64 CPU batches the presets draw every parameter first (in the order of
the stage-by-stage torch path) and run all stages in one compiled kernel call (``_plan.run_plan``,
see :mod:`semantic_genesis.transforms._backend`), which skips the voxels that out-painting
overwrites; ``semantic_genesis`` warps each sample inside that call, just before its stage (while it is
in cache, and on out-painted samples only the kept boxes' extent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from semantic_genesis.errors import ConfigError
from semantic_genesis.transforms import _backend
from semantic_genesis.transforms._draws import ShuffleDraw
from semantic_genesis.transforms._plan import KernelPlan, kernel_fits, run_plan
from semantic_genesis.transforms._random import (
    as_batch,
    bernoulli,
    device_constant,
    device_generator,
    geometric_counts,
    resolve_generator,
    unbatch,
    uniform,
)
from semantic_genesis.transforms.elastic import elastic, kernel_warp
from semantic_genesis.transforms.flip import apply_flips, flip_where, sample_flip_parity
from semantic_genesis.transforms.inpaint import draw_paint, inpaint, paint_fill_on_device, paint_region_on_device
from semantic_genesis.transforms.local_shuffle import local_shuffle, shuffle_on_device
from semantic_genesis.transforms.nonlinear import (
    device_maps,
    fix_exact_on_device,
    map_on_device,
    nonlinear,
    sample_nonlinear_maps,
)
from semantic_genesis.transforms.outpaint import outpaint
from semantic_genesis.utils.registry import Registry

# Option groups shared by presets (name -> default). Models Genesis strengths.
_SHUFFLE = {"shuffle_windows": 10000, "shuffle_size_divisor": 10, "permutation_bank": 64}
_NONLINEAR = {"inverted_prob": 0.5, "lut_size": 1024}
_INPAINT = {
    "inpaint_max_windows": 5,
    "inpaint_continue_prob": 0.95,
    "inpaint_size_fraction": (1 / 6, 1 / 3),
}
_OUTPAINT = {
    "outpaint_max_extra_windows": 4,
    "outpaint_continue_prob": 0.95,
    "outpaint_size_fraction": (3 / 7, 4 / 7),
}
_PAINT = {"paint_margin": 3, "fill": "noise"}

# Semantic Genesis code strengths (the official PyTorch ``luna_loader``'s transform settings).
_SG_STRENGTH = {
    "shuffle_windows": 5,
    "inpaint_max_windows": 1,
    "inpaint_continue_prob": 1.0,
    "outpaint_max_extra_windows": 0,
}

_DEFAULTS: dict[str, dict[str, Any]] = {
    "models_genesis": {
        "flip_prob": 0.4,
        "max_flips": 3,
        "flip_axes": "spatial",
        "shuffle_prob": 0.5,
        "nonlinear_prob": 0.9,
        "paint_prob": 0.9,
        "inpaint_rate": 0.2,
        **_SHUFFLE,
        **_NONLINEAR,
        **_INPAINT,
        **_OUTPAINT,
        **_PAINT,
    },
    "semantic_genesis": {
        "elastic": True,
        "elastic_alpha": 991.0,
        "elastic_sigma": 8.0,
        "strength": "semantic_genesis",
        "choice_probs": (0.25, 0.25, 0.25, 0.25),
        **_SHUFFLE,
        **_NONLINEAR,
        **_INPAINT,
        **_OUTPAINT,
        **_PAINT,
    },
    "nonlinear": dict(_NONLINEAR),
    "local_shuffle": dict(_SHUFFLE),
    "inpaint": {**_INPAINT, **_PAINT},
    "outpaint": {**_OUTPAINT, **_PAINT},
    "identity": {},
}

_CHOICES = {"flip_axes": ("spatial", "official"), "fill": ("noise", "constant"),
            "strength": ("semantic_genesis", "models_genesis")}


def available_presets() -> list[str]:
    """Names accepted by :func:`build_preset`."""
    return PRESETS.available()


def preset_defaults(name: str) -> dict[str, Any]:
    """The options of preset ``name`` with their defaults (before ``strength`` is resolved)."""
    return dict(PRESETS.get(name).defaults)


def _coerce(name: str, key: str, value: Any, default: Any) -> Any:
    """Check an override against the type of its default (YAML gives lists for tuples, ints for floats)."""
    where = f"transform preset {name!r}: option {key}"
    if key in _CHOICES:
        if value not in _CHOICES[key]:
            raise ConfigError(f"{where} must be one of {', '.join(map(repr, _CHOICES[key]))}, got {value!r}")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{where} must be a non-negative integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        value = float(value)
        if key.endswith(("_prob", "_rate")) and not 0.0 <= value <= 1.0:
            raise ConfigError(f"{where} must be a probability in [0, 1], got {value}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(default) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value
        ):
            raise ConfigError(f"{where} must be a list of {len(default)} non-negative numbers, got {value!r}")
        value = tuple(float(v) for v in value)
        if key == "choice_probs" and abs(sum(value) - 1.0) > 1e-6:
            raise ConfigError(f"{where} must sum to 1, got {list(value)}")
        return value
    return value  # pragma: no cover - every default has one of the types above


@dataclass(frozen=True)
class Preset:
    """A configured transform recipe: ``preset(x, generator=None) -> (input, target)``.

    Attributes:
        name: the preset name (see :func:`available_presets`).
        options: every option with its resolved value.
        spatial_dims: 3 or 2: inputs are batches ``(B, C, *spatial)`` or single samples ``(C, *spatial)``;
            None: 5D batches ``(B, C, X, Y, Z)`` only.
    """

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    spatial_dims: int | None = None

    def __call__(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Transform a batch.

        Args:
            x: float tensor in [0, 1] on any device, not modified: a batch ``(B, C, X, Y, Z)``; with
                :attr:`spatial_dims` a batch ``(B, C, *spatial)`` or one sample ``(C, *spatial)``.
            generator: CPU :class:`torch.Generator` for all random choices (None: seeded from
                torch's global RNG). The same seed gives the same outputs on the same device.

        Returns:
            ``(input, target)``: new tensors shaped like ``x`` on ``x``'s device; ``input`` is the
            transformed batch the network sees, ``target`` what it must restore.

        Raises:
            DataError: a shape the contract above does not accept (the message says what to pass).
        """
        batch, single = as_batch(x, f"transform preset {self.name!r}", self.spatial_dims)
        generator = resolve_generator(generator)
        return unbatch(PRESETS.get(self.name).run(batch, self.options, generator), single)


def build_preset(name: str, spatial_dims: int | None = None, **overrides: Any) -> Preset:
    """Build a transform preset.

    Args:
        name: one of :func:`available_presets`.
        spatial_dims: 3 or 2 to accept batches ``(B, C, *spatial)`` and single samples
            ``(C, *spatial)``; None (default) accepts 5D batches ``(B, C, X, Y, Z)`` only.
        **overrides: option values replacing the defaults (see :func:`preset_defaults`).

    Raises:
        ConfigError: unknown preset name, unknown option (the message lists the valid ones) or a
            value of the wrong type or range, or ``spatial_dims`` other than 2, 3 or None.
    """
    if spatial_dims is not None and (isinstance(spatial_dims, bool) or spatial_dims not in (2, 3)):
        raise ConfigError(f"transform preset {name!r}: spatial_dims must be 2, 3 or None, got {spatial_dims!r}")
    defaults = PRESETS.get(name).defaults
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        valid = ", ".join(defaults) if defaults else "none"
        raise ConfigError(f"transform preset {name!r}: unknown option {unknown[0]!r}; valid options: {valid}")
    options = dict(defaults)
    for key, value in overrides.items():
        options[key] = _coerce(name, key, value, defaults[key])
    if name == "semantic_genesis" and options["strength"] == "semantic_genesis":
        for key, value in _SG_STRENGTH.items():
            if key not in overrides:  # explicit overrides win over the strength preset
                options[key] = value
    return Preset(name=name, options=options, spatial_dims=spatial_dims)


# --------------------------------------------------------------------------------------------------
# Stage helpers: apply one transform to the selected samples only.
# --------------------------------------------------------------------------------------------------
def _on_selected(
    x: torch.Tensor, selected: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor], owned: bool = False
) -> torch.Tensor:
    """Replace the rows ``selected`` (CPU bool) of ``x`` by ``fn(x[rows])``.

    ``x`` is left untouched unless ``owned`` is True (a working tensor of the preset), in which case
    the rows are written in place and ``x`` itself is returned.
    """
    rows = torch.nonzero(selected).flatten()
    if rows.numel() == 0:
        return x
    if rows.numel() == x.shape[0]:
        return fn(x)
    rows = rows.to(x.device)
    out = x if owned else x.clone()
    out.index_copy_(0, rows, fn(x.index_select(0, rows)))
    return out


def _shuffle(o: Mapping[str, Any], g: torch.Generator) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda t: local_shuffle(
        t, g, num_windows=o["shuffle_windows"], size_divisor=o["shuffle_size_divisor"],
        permutation_bank=o["permutation_bank"], spatial_dims=t.dim() - 2,
    )


def _nonlinear(o: Mapping[str, Any], g: torch.Generator) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda t: nonlinear(t, g, inverted_prob=o["inverted_prob"], lut_size=o["lut_size"], spatial_dims=t.dim() - 2)


def _inpaint(o: Mapping[str, Any], g: torch.Generator) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda t: inpaint(
        t, g, max_windows=o["inpaint_max_windows"], continue_prob=o["inpaint_continue_prob"],
        size_fraction=o["inpaint_size_fraction"], margin=o["paint_margin"], fill=o["fill"], spatial_dims=t.dim() - 2,
    )


def _outpaint(o: Mapping[str, Any], g: torch.Generator) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda t: outpaint(
        t, g, max_extra_windows=o["outpaint_max_extra_windows"], continue_prob=o["outpaint_continue_prob"],
        size_fraction=o["outpaint_size_fraction"], margin=o["paint_margin"], fill=o["fill"], spatial_dims=t.dim() - 2,
    )


def _run_models_genesis(x: torch.Tensor, o: Mapping[str, Any], g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    if _backend.device_draws(x):
        return _models_genesis_on_device(x, o, g)
    batch, ndim = x.shape[0], x.dim() - 2
    # All per-sample decisions first, in the official code's order.
    parity = sample_flip_parity(g, batch, ndim, o["flip_prob"], o["max_flips"], o["flip_axes"])
    do_shuffle = bernoulli(g, batch, o["shuffle_prob"])
    do_nonlinear = bernoulli(g, batch, o["nonlinear_prob"])
    do_paint = bernoulli(g, batch, o["paint_prob"])
    do_inpaint = do_paint & bernoulli(g, batch, o["inpaint_rate"])
    do_outpaint = do_paint & ~do_inpaint
    if _compiled(x, o):
        plan = KernelPlan(
            batch, parity,
            shuffle=_draw_shuffle(g, do_shuffle, o),
            maps=_draw_maps(g, do_nonlinear, o),
            inpaint=_draw_inpaint(g, x, do_inpaint, o),
            outpaint=_draw_outpaint(g, x, do_outpaint, o),
        )
        out, target = run_plan(x, plan)
        return out, target
    target = apply_flips(x, parity)
    out = target.clone()  # the preset's own working tensor, updated in place below
    out = _on_selected(out, do_shuffle, _shuffle(o, g), owned=True)
    out = _on_selected(out, do_nonlinear, _nonlinear(o, g), owned=True)
    out = _on_selected(out, do_inpaint, _inpaint(o, g), owned=True)
    out = _on_selected(out, do_outpaint, _outpaint(o, g), owned=True)
    return out, target


def _compiled(x: torch.Tensor, o: Mapping[str, Any]) -> bool:
    """Whether the compiled kernels run this batch (see ``_backend`` and ``_plan``)."""
    return _backend.kernel_for(x) is not None and kernel_fits(tuple(x.shape[2:]), o["shuffle_size_divisor"])


# Draws of the compiled path: exactly what the stage functions draw for the selected rows, in the same
# order, so that both paths consume the generator alike.
def _draw_shuffle(g: torch.Generator, selected: torch.Tensor, o: Mapping[str, Any]) -> ShuffleDraw | None:
    rows = _rows(selected)
    if not rows.numel() or not o["shuffle_windows"]:
        return None
    seeds = torch.randint(0, 2**62, (int(rows.numel()),), generator=g)
    return ShuffleDraw(rows, seeds, o["shuffle_windows"], o["shuffle_size_divisor"])


def _draw_maps(g: torch.Generator, selected: torch.Tensor, o: Mapping[str, Any]):
    rows = _rows(selected)
    if not rows.numel():
        return None
    return rows, sample_nonlinear_maps(int(rows.numel()), g, o["inverted_prob"], o["lut_size"])


def _draw_inpaint(g: torch.Generator, x: torch.Tensor, selected: torch.Tensor, o: Mapping[str, Any]):
    rows = _rows(selected)
    if not rows.numel() or not o["inpaint_max_windows"]:
        return None
    counts = geometric_counts(g, int(rows.numel()), o["inpaint_max_windows"], o["inpaint_continue_prob"])
    return rows, draw_paint(x, int(rows.numel()), g, counts, o["inpaint_max_windows"], o["inpaint_size_fraction"],
                            margin=o["paint_margin"], fill=o["fill"], size_from_end=False)


def _draw_outpaint(g: torch.Generator, x: torch.Tensor, selected: torch.Tensor, o: Mapping[str, Any]):
    rows = _rows(selected)
    if not rows.numel():
        return None
    extra = o["outpaint_max_extra_windows"]
    counts = 1 + geometric_counts(g, int(rows.numel()), extra, o["outpaint_continue_prob"])
    return rows, draw_paint(x, int(rows.numel()), g, counts, 1 + extra, o["outpaint_size_fraction"],
                            margin=o["paint_margin"], fill=o["fill"], size_from_end=True)


def _rows(selected: torch.Tensor) -> torch.Tensor:
    return torch.nonzero(selected).flatten()


def _copy(x: torch.Tensor) -> torch.Tensor:
    """A copy of ``x``; a kernel-path batch gets a pooled buffer (``_backend.BUFFERS``)."""
    if _backend.kernel_for(x) is None:
        return x.clone()
    return _backend.new_batch_like(x).copy_(x)


def _run_semantic_genesis(x: torch.Tensor, o: Mapping[str, Any], g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    if _backend.device_draws(x):
        return _semantic_genesis_on_device(x, o, g)
    batch = x.shape[0]
    r = uniform(g, batch)
    edges = torch.cumsum(torch.tensor(o["choice_probs"], dtype=torch.float64), 0)
    choice = torch.bucketize(r, edges[:-1], right=False)  # official luna_loader: r <= .25 shuffle, <= .5 nonlinear ...
    if _compiled(x, o):
        # the kernel warps each sample just before its stage (the same draws, in the same order)
        warp = kernel_warp(x, g, o["elastic_alpha"], o["elastic_sigma"]) if o["elastic"] and batch else None
        plan = KernelPlan(
            batch,
            shuffle=_draw_shuffle(g, choice == 0, o),
            maps=_draw_maps(g, choice == 1, o),
            inpaint=_draw_inpaint(g, x, choice == 2, o),
            outpaint=_draw_outpaint(g, x, choice == 3, o),
        )
        return run_plan(x, plan, warp, keep_input=True)
    warped = elastic(x, g, alpha=o["elastic_alpha"], sigma=o["elastic_sigma"], spatial_dims=x.dim() - 2) if o["elastic"] else None
    out = x.clone() if warped is None else warped
    for index, make in enumerate((_shuffle, _nonlinear, _inpaint, _outpaint)):
        out = _on_selected(out, choice == index, make(o, g), owned=True)
    return out, x.clone()


# The device path (``_backend.device_draws``): every stage on the whole batch, blended in per sample.
def _rows_mask(selected: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(B,)`` bool as ``(B, 1, ..., 1)`` for ``torch.where`` against ``x``."""
    return selected.view((x.shape[0],) + (1,) * (x.dim() - 1))


def _restore_on_device(
    source: torch.Tensor, o: Mapping[str, Any], dg: torch.Generator, maps,
    do_shuffle: torch.Tensor, do_nonlinear: torch.Tensor, do_inpaint: torch.Tensor, do_outpaint: torch.Tensor,
) -> torch.Tensor:
    """Shuffle, map and paint the rows of ``source`` selected by the four ``(B,)`` device masks."""
    spatial = tuple(int(s) for s in source.shape[2:])
    batch = source.shape[0]
    out = source
    if o["shuffle_windows"]:
        out = shuffle_on_device(source, dg, do_shuffle, o["shuffle_windows"], o["shuffle_size_divisor"])
    mapped, exact = map_on_device(out, maps)
    region = torch.zeros((batch, 1) + spatial, dtype=torch.bool, device=source.device)
    if o["inpaint_max_windows"]:
        inside = paint_region_on_device(dg, batch, spatial, o["inpaint_max_windows"], o["inpaint_continue_prob"], 0,
                                        o["inpaint_size_fraction"], o["paint_margin"], size_from_end=False)
        region |= inside & _rows_mask(do_inpaint, region)
    kept = paint_region_on_device(dg, batch, spatial, 1 + o["outpaint_max_extra_windows"], o["outpaint_continue_prob"],
                                  1, o["outpaint_size_fraction"], o["paint_margin"], size_from_end=True)
    region |= ~kept & _rows_mask(do_outpaint, region)
    result = torch.where(_rows_mask(do_nonlinear, out), mapped, out)
    result = torch.where(region, paint_fill_on_device(source, dg, o["fill"]), result)
    # the steep cells of the maps, only where the value is kept (one synchronisation, at the end)
    exact &= (do_nonlinear[:, None] & ~region.expand_as(source).reshape(batch, -1))
    return fix_exact_on_device(result, out, exact, maps)


def _models_genesis_on_device(x: torch.Tensor, o: Mapping[str, Any], g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    batch, ndim = x.shape[0], x.dim() - 2
    maps = device_maps(g, batch, o["inverted_prob"], o["lut_size"], x.device)  # first: the copy waits for the device
    dg = device_generator(g, x.device)
    parity = sample_flip_parity(dg, batch, ndim, o["flip_prob"], o["max_flips"], o["flip_axes"])
    do_shuffle = bernoulli(dg, batch, o["shuffle_prob"])
    do_nonlinear = bernoulli(dg, batch, o["nonlinear_prob"])
    do_paint = bernoulli(dg, batch, o["paint_prob"])
    do_inpaint = do_paint & bernoulli(dg, batch, o["inpaint_rate"])
    target = flip_where(x, parity)
    out = _restore_on_device(target, o, dg, maps, do_shuffle, do_nonlinear, do_inpaint, do_paint & ~do_inpaint)
    return out, target


def _semantic_genesis_on_device(x: torch.Tensor, o: Mapping[str, Any], g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    batch = x.shape[0]
    maps = device_maps(g, batch, o["inverted_prob"], o["lut_size"], x.device)
    dg = device_generator(g, x.device)
    edges = torch.cumsum(device_constant(o["choice_probs"], x.device, torch.float64), 0)
    choice = torch.bucketize(uniform(dg, batch), edges[:-1], right=False)
    warped = elastic(x, g, alpha=o["elastic_alpha"], sigma=o["elastic_sigma"], spatial_dims=x.dim() - 2) if o["elastic"] else x
    out = _restore_on_device(warped, o, dg, maps, choice == 0, choice == 1, choice == 2, choice == 3)
    return out, x.clone()


def _single(make: Callable[[Mapping[str, Any], torch.Generator], Callable[[torch.Tensor], torch.Tensor]]):
    def run(x: torch.Tensor, o: Mapping[str, Any], g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return make(o, g)(x), _copy(x)

    return run


Runner = Callable[[torch.Tensor, Mapping[str, Any], torch.Generator], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class PresetSpec:
    """A registered preset: its options with their defaults, and ``run(x, options, generator)``."""

    defaults: Mapping[str, Any]
    run: Runner


#: The preset registry, in the order of :func:`available_presets`.
PRESETS: Registry[PresetSpec] = Registry("transform preset", sort=False)
for _name, _run in (
    ("models_genesis", _run_models_genesis),
    ("semantic_genesis", _run_semantic_genesis),
    ("nonlinear", _single(_nonlinear)),
    ("local_shuffle", _single(_shuffle)),
    ("inpaint", _single(_inpaint)),
    ("outpaint", _single(_outpaint)),
    ("identity", lambda x, o, g: (_copy(x), _copy(x))),
):
    PRESETS.add(_name, PresetSpec(_DEFAULTS[_name], _run))
