"""Configuration: frozen dataclasses loaded from YAML, overridable with ``key.sub=value``.

One root :class:`Config` holds a section per pipeline stage, so a single YAML file (e.g. the shipped
preset ``semantic_genesis_3d``) can drive ``discover``, ``pretrain`` and ``finetune``; each command
reads the sections it needs. The machinery is generic:

* :func:`from_dict` builds any config dataclass from a mapping, checking types recursively. Unknown
  keys and wrong types raise :class:`~semantic_genesis.errors.ConfigError` naming the dotted key and
  listing the valid keys.
* :func:`apply_overrides` applies ``a.b=value`` strings (values are parsed as YAML, so ``true``,
  ``1e-3``, ``[64, 64, 32]`` and ``null`` work).
* :func:`load_config` = YAML file + overrides; :func:`save_config` writes the resolved config as YAML
  (atomically) into a run folder.
* Presets: the YAML files shipped in the package (``semantic_genesis/configs/``).
  :func:`resolve_config_path` turns ``--config NAME`` into a file: an existing file wins, otherwise a
  preset of that name (with or without ``.yaml``); :func:`available_presets` lists them.

Errors say where the bad value came from: ``FILE: ...`` for the YAML file (duplicate keys with their
line, non-UTF-8 bytes, a scalar where a section belongs) and ``command line: ...`` for overrides.

Section owners: add fields to *your* section only; every field needs a default and a comment.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, TypeVar, Union

from semantic_genesis.errors import ConfigError

T = TypeVar("T")

FLOAT32_MAX = 3.4028234663852886e38


def check_learning_rate(name: str, lr: float, first_step_factor: float = 1.0, allow_zero: bool = False) -> None:
    """Refuse a learning rate the optimiser cannot use (raised at config load, before any run).

    Args:
        name: the field name (the section adds its prefix to the message).
        lr: the value.
        first_step_factor: how much larger than ``lr`` the optimiser's first step is (Adam's bias
            correction divides by ``1 - beta1``: 10 for the default 0.9); the step is a float32
            number, so ``lr * factor`` must not overflow float32.
        allow_zero: accept 0 (floors of schedules).

    Raises:
        ConfigError: ``lr`` is NaN, infinite, negative (or zero), or overflows float32.
    """
    if not math.isfinite(lr):
        raise ConfigError(f"{name}: {lr} is not a finite number; a learning rate must be finite")
    if lr < 0 or (lr == 0 and not allow_zero):
        raise ConfigError(f"{name}: must be {'>= 0' if allow_zero else '> 0'}, got {lr:g}")
    if lr * first_step_factor > FLOAT32_MAX:
        detail = f" (the optimiser's first step is {first_step_factor:g} x lr)" if first_step_factor != 1.0 else ""
        raise ConfigError(
            f"{name}: {lr:g} overflows float32{detail}; the largest usable value is "
            f"{FLOAT32_MAX / first_step_factor:.3g}"
        )


# --------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IntensityConfig:
    """How raw scans become float32 in [0, 1] (see ``preprocess.py``)."""

    modality: Literal["ct", "mri", "xray", "auto"] = "auto"  # auto: from file metadata, else CT
    hu_min: float = -1000.0  # CT window, Models Genesis convention
    hu_max: float = 1000.0
    lower_percentile: float = 0.5  # MRI / X-ray robust scaling
    upper_percentile: float = 99.5
    spacing: tuple[float, ...] | None = None  # resample to this spacing (mm, X Y Z) first; None = native


@dataclass(frozen=True)
class CubesConfig:
    """Cube-set generation for Models Genesis pretraining (``semantic-genesis cubes``)."""

    # (X, Y, Z) voxels of a stored cube; two values (H, W) make a 2D patch set: patches of radiographs
    # and of axial CT/MRI slices, stored as (1, H, W)
    cube_size: tuple[int, ...] = (64, 64, 32)
    cubes_per_scan: int = 32  # official ``--scale``
    max_trials_factor: int = 50  # give up on a scan after factor * cubes_per_scan trials
    crop_scales: tuple[float, ...] = (1.0,)  # in-plane crop size / cube size; >1 crops more and resizes
    # relative: margins of border_fraction of each axis; official: border_voxels (100, 100, 30) as the
    # official generator on 512x512 LUNA16 scans (leaves no room on small or resampled scans)
    border_rule: Literal["relative", "official"] = "relative"
    border_fraction: tuple[float, float, float] = (0.1, 0.1, 0.1)  # excluded margin per axis (relative)
    border_voxels: tuple[int, int, int] = (100, 100, 30)  # excluded margin per axis (official rule)
    # lung: mostly air/lung inside the body (chest CT); lung_official: the official darkness-only test
    # (outside air passes too; the official borders keep cubes in the body); body: inside the body
    # (MRI, other CT, coarse grids); none: anywhere
    content_test: Literal["lung", "lung_official", "body", "none"] = "lung"
    content_threshold: float = 0.425  # [0,1] value marking tissue ((-150 HU + 1000) / 2000)
    content_max: float = 0.15  # lung test: accept if mean tissue score <= this
    look_ahead: int = 3  # slices looked ahead by the lung test
    body_min_fraction: float = 0.5  # body test: accept if this fraction of the cube is inside the body
    # auto: LUNA16 by subset (0-4 train, 5-6 validation, 7-9 test, as the official code), other data
    # random (0.7 / 0.15 / 0.15); official: the dataset's official split; random; or [train, val, test]
    # fractions of a random split by patient
    split: Literal["auto", "official", "random"] | tuple[float, float, float] = "auto"
    dtype: Literal["float16", "uint8"] = "float16"
    shard_size: int = 1024  # cubes per shard file


_ADAM_FIRST_STEP = 10.0  # 1 / (1 - 0.9): Adam's first step with the default beta1


@dataclass(frozen=True)
class DiscoveryConfig:
    """Self-discovery (Semantic Genesis): autoencoder, neighbours, coordinates, pattern set."""

    ae_input_size: tuple[int, ...] = (128, 128, 64)  # whole scans resized to this: (X, Y, Z), or (H, W) in 2D
    ae_model: Literal["unet3d", "unet2d", "resunet2d"] = "unet3d"  # the autoencoder's network (2D: unet2d/resunet2d)
    ae_skip_connections: bool = False  # U-Net skips let the bottleneck carry little (official 2020 code: skip-less "Vnet")
    ae_width: float = 1.0
    ae_epochs: int = 100
    ae_batch_size: int = 8
    ae_lr: float = 1e-3
    ae_patience: int = 50  # early stopping, epochs without validation improvement
    ae_plateau_patience: int = 20  # ReduceLROnPlateau (x0.5) patience, epochs (official value)
    ae_min_lr: float = 1e-6
    ae_norm: Literal["batch_stats", "batch", "instance", "group"] = "batch"  # eval features use running stats
    ae_weights: str | None = None  # use this trained autoencoder (safetensors) instead of training one
    strategy: Literal["paper", "per_class"] = "paper"
    num_neighbours: int = 200  # K (train)
    num_val_neighbours: int = 30  # validation neighbours per reference
    num_classes: int = 44  # C
    classes_per_reference: int = 44  # paper strategy: coordinates drawn per reference
    pattern_size: tuple[int, ...] = (64, 64, 32)  # (X, Y, Z) cubes, or (H, W): 2D patterns (Semantic Genesis 2D)
    slice_position: float = 0.5  # 2D discovery on CT/MRI volumes: the axial slice at this height of the body box
    num_resolutions: int = 3  # 1 = base crop only; 2 and 3 add multi-resolution crops
    multires_size_range: tuple[int, int] = (50, 79)  # in-plane crop size (inclusive), resized to pattern
    multires_jitter: int = 10  # +- in-plane shift of multi-resolution crops
    min_distance: float = 5.0  # voxels between coordinates of one reference
    border_rule: Literal["relative", "official"] = "relative"  # as cubes.border_rule
    border_fraction: tuple[float, float, float] = (0.1, 0.1, 0.1)
    border_voxels: tuple[int, int, int] = (100, 100, 30)  # official rule (512x512 LUNA16 scans)
    content_test: Literal["lung", "lung_official", "body", "none"] = "lung"  # as cubes.content_test
    content_threshold: float = 0.425  # lung test: [0,1] value marking tissue ((-150 HU + 1000) / 2000)
    content_max: float = 0.15  # lung test: accept if mean tissue score <= this
    look_ahead: int = 3  # lung test: slices looked ahead
    body_min_fraction: float = 0.5  # body test: accept if this fraction of the crop is inside the body
    coordinate_frame: Literal["body", "volume"] = "body"  # coordinates relative to the body box or the volume
    max_coordinate_trials: int = 2000  # candidate positions tried per reference before giving up
    # auto: LUNA16 by subset (train 0-4, validation 5-6; test subsets 7-9 are left out of discovery, as
    # in the official code), other data random; official: the dataset's split; random: val_fraction
    split: Literal["auto", "official", "random"] = "auto"
    val_fraction: float = 0.15  # random split: patients held out for validation patterns
    dtype: Literal["float16", "uint8"] = "float16"
    shard_size: int = 1024
    memory_mb: int = 2048  # pattern generation: crops held in memory per pass over the neighbours
    progress: bool = True

    def __post_init__(self) -> None:
        check_learning_rate("ae_lr", self.ae_lr, _ADAM_FIRST_STEP)  # the autoencoder trains with Adam
        check_learning_rate("ae_min_lr", self.ae_min_lr, _ADAM_FIRST_STEP, allow_zero=True)
        if self.ae_plateau_patience < 1:
            raise ConfigError(f"ae_plateau_patience must be >= 1 epoch, got {self.ae_plateau_patience}")


@dataclass(frozen=True)
class ModelConfig:
    """Network choice (``semantic_genesis.models.create`` name and arguments).

    Methods that train a registered network as it is (Models Genesis, the restoration baselines) build
    ``name``; methods that put their own head on a backbone (the Semantic Genesis family, fine-tuning
    from scratch) build the backbone ``name`` names (``unet3d``, ``unet2d``, ``resunet2d``, ``swin2d``,
    ``swin_unetr2d``). ``args`` passes the model's other constructor arguments (unknown ones are errors).
    """

    name: str = "unet3d"
    in_channels: int = 1
    out_channels: int = 1
    width: float = 1.0  # channel multiplier; 1.0 = the official Models Genesis widths
    norm: Literal["batch_stats", "batch", "instance", "group"] = "batch_stats"
    out_activation: Literal["sigmoid", "none", "softmax"] = "sigmoid"
    num_classes: int = 0  # classification head size (0 = no head / the model's default)
    skip_connections: bool = True  # False = plain conv autoencoder (no U-Net concatenations)
    # further constructor arguments of the model (semantic_genesis.models.model_arguments(name)), e.g.
    # swin2d / swin_unetr2d: {size: tiny} or {size: swin_b, use_checkpoint: true, drop_path_rate: 0.1}
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TransformsConfig:
    """Self-restoration transform preset (``semantic_genesis.transforms.build_preset``)."""

    preset: str = "models_genesis"
    overrides: dict[str, Any] = field(default_factory=dict)  # keyword overrides of the preset
    device: Literal["auto", "cpu", "cuda"] = "auto"  # where batches are transformed


@dataclass(frozen=True)
class MethodConfig:
    """Pretraining method (``semantic_genesis.methods`` registry) and its options.

    ``options`` belong to the method: each method types them as a frozen dataclass (its
    ``options_class``, e.g. Semantic Genesis ``lambda_rec``, ``lambda_cls``, ``cls_warmup_epochs``,
    ``preset``; see ``semantic_genesis.methods.options``), checked when the method is built with the
    same errors as every other key (``unknown config key method.options.X; valid keys of
    method.options: ...``).
    """

    name: str = "models_genesis"
    options: dict[str, Any] = field(default_factory=dict)  # the method's own options (typed by the method)


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and learning-rate schedule."""

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: Literal["none", "step", "cosine", "plateau"] = "step"
    step_size: int = 40  # epochs, step scheduler
    gamma: float = 0.5
    warmup_steps: int = 0  # linear warm-up of the lr over the first steps
    betas: tuple[float, float] = (0.9, 0.999)  # adam / adamw
    nesterov: bool = False  # sgd
    plateau_patience: int = 20  # epochs without validation improvement before lr *= gamma (plateau)
    min_lr: float = 1e-6  # floor of the plateau and cosine schedules

    def __post_init__(self) -> None:
        factor = 1.0
        if self.name in ("adam", "adamw"):
            if not 0.0 <= self.betas[0] < 1.0 or not 0.0 <= self.betas[1] < 1.0:
                raise ConfigError(f"betas: each must be in [0, 1), got {list(self.betas)}")
            factor = 1.0 / (1.0 - self.betas[0])  # bias correction of the first step
        check_learning_rate("lr", self.lr, factor)
        check_learning_rate("min_lr", self.min_lr, factor, allow_zero=True)


@dataclass(frozen=True)
class TrainConfig:
    """The shared training loop (``semantic_genesis.training``)."""

    batch_size: int = 16
    epochs: int = 100
    max_steps: int = 0  # stop after this many optimiser steps (0 = no limit)
    steps_per_epoch: int = 0  # 0 = one pass over the training set
    val_batches: int = 0  # 0 = the whole fixed validation set
    patience: int = 50  # early stopping, epochs without validation improvement
    checkpoint_every: int = 500  # steps
    log_every: int = 10  # steps
    num_workers: int = 2
    amp: Literal["none", "bf16", "fp16"] = "none"
    compile: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    grad_clip: float = 0.0  # max gradient norm (0 = off)
    progress: bool = True
    min_delta: float = 1e-4  # improvement of the monitored validation metric that resets patience
    resume: bool = True  # continue from out/checkpoints/last.pt when present (false: refuse to overwrite)
    tensorboard: bool = True  # also log to out/tensorboard when the tensorboard package is installed
    nan_guard: bool = True  # stop with TrainingError on a NaN/inf loss, keeping the last good checkpoint
    channels_last: bool = False  # channels-last 3D memory format (model and batches); faster small CPU models
    # where the method's random transforms run: on the training device inside the step, or in the
    # data-loader workers on the CPU (compiled kernels; frees the GPU, scales with num_workers);
    # auto = workers on a CUDA device when the method has a prepare_batch and num_workers > 0, else
    # device (CPU runs: device). The run's config.yaml and metrics.jsonl record the resolved choice.
    transforms_on: Literal["auto", "device", "workers"] = "auto"


@dataclass(frozen=True)
class FinetuneConfig:
    """Target-task fine-tuning and the trials protocol (``semantic_genesis.finetune``)."""

    task: str = "ncc"  # ncc | ncs | lcs | bms (semantic_genesis.finetune.tasks.available())
    init: str = "scratch"  # scratch | path to weights | name=path
    inits: tuple[str, ...] = ("scratch",)  # evaluate: name=path entries (scratch needs no path)
    trials: int = 10  # evaluate: fine-tuning runs per initialisation (paper: 10)
    label_fraction: float = 1.0  # fraction of training patients used (few-label regimes)
    # evaluate: label-efficiency sweep, e.g. [0.1, 0.25, 0.5, 1.0] (nested subsets of the training
    # patients, the same for every initialisation); empty = the single label_fraction
    label_fractions: tuple[float, ...] = ()
    # evaluate: finetune (whole network trained) and/or linear_probe (frozen encoder: GAP + linear
    # layer for classification, trained decoder for segmentation), reported side by side
    modes: tuple[str, ...] = ("finetune",)
    ttest: Literal["student", "welch"] = "student"  # evaluate: t-test vs the best (paper: Student's)
    # label_fraction < 1: false = train.epochs as given (fewer optimiser steps with fewer labels);
    # true = train.epochs and train.patience scaled by (full / kept training samples), so every
    # fraction gets about the optimiser steps of the full training set
    equal_steps: bool = False
    # auto: the official split where the layout defines one by itself (LUNA16 subsets: 0-4 / 5-6 / 7-9),
    # else random (0.6 / 0.2 / 0.2); official: the task's official lists (NCC LUNA16 subsets, LCS LiTS
    # cases 0-99 / 100-114 / 115-129, BMS BraTS 2018 folds, DXC ChestX-ray14 test_list.txt and
    # train_val_list.txt split by patient); random; or [train, val, test] fractions
    split: Literal["auto", "official", "random"] | tuple[float, float, float] = "auto"
    split_seed: int | None = None  # None = the root seed; fixed across trials so the test set is shared
    freeze_encoder: bool = False  # True: linear probe / frozen features; only head (+decoder) trained
    # fine-tuning from a weights file (not scratch, whose encoder is random; not with freeze_encoder):
    # the encoder's learning rate is optim.lr x encoder_lr_scale (> 0), the new head / decoder get optim.lr
    encoder_lr_scale: float = 1.0
    # fine-tuning from a weights file: the encoder is frozen for the first N epochs (not updated, its batch
    # norms in eval mode with the pretrained statistics; the head / decoder train), then trained; < train.epochs
    freeze_encoder_epochs: int = 0
    # a frozen encoder (freeze_encoder, or the first freeze_encoder_epochs): its batch norms' running statistics
    # are re-estimated on the first epoch's training batches before training (AdaBN; no labels used), instead
    # of the statistics of the pretraining inputs; ignored while nothing is frozen
    recalibrate_norm: bool = False
    loss: str = "auto"  # auto: BCE for classification, Dice+BCE for segmentation; or bce | dice | dice_bce
    metric: str = "auto"  # auto: the task's paper metric (auc for ncc, iou for segmentation)
    crop_size: tuple[int, int, int] = (64, 64, 32)  # (X, Y, Z) input of the network (paper: 64x64x32)
    image_size: tuple[int, int] = (224, 224)  # 2D tasks (dxc, pxs): every image resized to (H, W), a multiple of the backbone's min_divisor
    head: Literal["mlp", "linear", "genesis"] = "mlp"  # classification head on the bottleneck (see finetune.models)
    # batch norm of the fine-tuned network: batch = running statistics in eval (a prediction does not depend
    # on the rest of its batch; standard practice, and what the papers' evaluation needs); batch_stats = the
    # official ContBatchNorm3d (batch statistics also in eval: reproduces the official code's numbers);
    # keep = as the weights file (or model.norm) says. Both batch norms share their tensors, so either
    # loads the other's weights; instance / group norms are kept (batch-independent already).
    norm: Literal["batch", "batch_stats", "keep"] = "batch"
    # fine-tune weights pretrained on test patients of the task anyway (refused by default: inflated scores);
    # the overlap is recorded in result.json / results.json / results.md
    allow_pretraining_overlap: bool = False
    pos_weight: float | str = "auto"  # classification: auto = negatives/positives in train split; or a number; none
    balanced_sampling: bool = False  # classification: sample classes equally instead of pos_weight
    max_negatives: int = 64  # ncc: candidates (false positives) kept per scan, seeded (LUNA16 has ~750k)
    samples_per_volume: int = 8  # lcs/bms: training crops drawn from each volume per epoch
    foreground_fraction: float = 0.5  # lcs/bms: share of training crops centred on a foreground voxel
    sw_overlap: float = 0.25  # lcs/bms: sliding-window overlap at whole-volume inference (MONAI)
    sw_batch_size: int = 4
    threshold: float = 0.5  # probability threshold of Dice / IoU (official evaluation: 0.5)
    # IoU / Dice of segmentation tasks: pooled = over all test voxels (official evaluation, Table 2);
    # per_case = mean of per-volume values; keras = two-class mean IoU over thresholds 0.5..0.95
    iou: Literal["pooled", "per_case", "keras"] = "pooled"
    resize_inplane: int = 0  # lcs: resize volumes in-plane to NxN first (official LiTS data: 256); 0 = native
    max_patients: int = 0  # use only the first N patients of the dataset (0 = all); quick runs
    options: dict[str, Any] = field(default_factory=dict)  # task-specific extras


@dataclass(frozen=True)
class Config:
    """The root configuration shared by every command."""

    seed: int = 0
    data: str | None = None  # input folder of the command (scans, cube set, pattern set, task data)
    patterns: str | None = None  # pattern set folder (Semantic Genesis pretraining)
    out: str | None = None  # run folder
    intensity: IntensityConfig = field(default_factory=IntensityConfig)
    cubes: CubesConfig = field(default_factory=CubesConfig)
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    transforms: TransformsConfig = field(default_factory=TransformsConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)


# --------------------------------------------------------------------------------------------------
# Machinery
# --------------------------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join("..." if a is Ellipsis else _type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against type ``tp`` and return it converted (lists -> tuples, int -> float)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value) and isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, prefix=key)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(repr(a) for a in allowed)}")
        return value
    if origin in (Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: {value!r} does not match {_type_name(tp)}")
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{key}: expected null, got {value!r}")
        return None
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)  # YAML reads "1e-3" as a string; accept it
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list ({_type_name(tp)}), got {value!r}")
        args = typing.get_args(tp)
        if origin is list:
            item_tp = args[0] if args else Any
            return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{key}: expected {len(args)} values ({_type_name(tp)}), got {list(value)!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    raise ConfigError(f"{key}: unsupported config type {_type_name(tp)}")  # pragma: no cover


def valid_keys(cls: type) -> list[str]:
    """The field names of config dataclass ``cls``."""
    return [f.name for f in dataclasses.fields(cls)]


def from_dict(cls: type[T], data: Mapping[str, Any] | None, prefix: str = "") -> T:
    """Build config dataclass ``cls`` from a (nested) mapping, checking keys and types.

    Args:
        cls: a frozen config dataclass.
        data: mapping of field name to value; missing fields take their defaults.
        prefix: dotted path of this section, for error messages.

    Raises:
        ConfigError: unknown key (the message lists the valid keys), wrong type, or a value the
            section itself rejects (e.g. a learning rate that overflows float32).
    """
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = valid_keys(cls)
    unknown = [k for k in data if k not in names]
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown config key {where}{unknown[0]!s}; valid keys{' of ' + prefix if prefix else ''}: "
            + ", ".join(names)
        )
    kwargs = {}
    for name in names:
        if name in data:
            key = f"{prefix}.{name}" if prefix else name
            kwargs[name] = _coerce(data[name], hints[name], key)
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # raised by a section's own checks (__post_init__), keyed by field name
        raise ConfigError(f"{prefix}.{exc}" if prefix else str(exc)) from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """Convert a config dataclass to plain Python (tuples become lists), for YAML/JSON."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return plain(cfg)


Override = Union[str, tuple[str, Any]]  # "key=value" text, or an already parsed (key, value)


def parse_override(text: Override) -> tuple[list[str], Any]:
    """Split ``"a.b=value"`` into (``["a", "b"]``, parsed value). Values are parsed as YAML.

    A ``(key, value)`` pair is taken as already parsed (e.g. a path from ``--data``, which must not be
    read as YAML).
    """
    import yaml

    if isinstance(text, tuple):
        key, value = text
        return str(key).split("."), value
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value (e.g. train.batch_size=8)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def override_text(override: Override) -> str:
    """``key=value`` as the user would type it (for messages)."""
    if isinstance(override, tuple):
        return f"{override[0]}={override[1]}"
    return override


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[Override], cls: type = Config) -> dict[str, Any]:
    """Return a copy of the mapping ``data`` with ``key.sub=value`` overrides applied.

    Keys are checked against ``cls`` as they are applied, so a typo fails with the list of valid
    keys at that level. Keys inside ``dict`` fields (e.g. ``transforms.overrides.p=0.5``) are free.
    An override below a key that ``data`` holds as a scalar (``optim: 5`` with ``optim.lr=0.1``) is
    an error, not a silent replacement of the scalar.
    """
    result: dict[str, Any] = _deep_copy(dict(data))
    for override in overrides:
        parts, value = parse_override(override)
        text = override_text(override)
        node = result
        section_cls: Any = cls
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            dotted = ".".join(parts[: depth + 1])
            if section_cls is not None:
                names = valid_keys(section_cls)
                if part not in names:
                    where = ".".join(parts[:depth])
                    raise ConfigError(
                        f"unknown config key {dotted}; valid keys"
                        f"{' of ' + where if where else ''}: {', '.join(names)}"
                    )
                hint = typing.get_type_hints(section_cls)[part]
                section_cls = hint if dataclasses.is_dataclass(hint) else None
                if not last and section_cls is None and typing.get_origin(hint) is not dict:
                    raise ConfigError(f"{dotted} is not a section; cannot set {text!r}")
            if last:
                node[part] = value
            else:
                if part not in node:
                    node[part] = {}
                elif not isinstance(node[part], dict):
                    raise ConfigError(
                        f"{dotted} is {node[part]!r}, not a section, so {text!r} cannot be applied; "
                        f"write {dotted} as a mapping (e.g. {dotted}: {{{parts[depth + 1]}: ...}})"
                    )
                node = node[part]
    return result


def _deep_copy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deep_copy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deep_copy(v) for v in d]
    return d


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int, first_line: int):
        super().__init__(key)
        self.key, self.line, self.first_line = key, line, first_line


def _loader() -> type:
    """A ``yaml.SafeLoader`` that refuses duplicate keys (PyYAML keeps the last one silently)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                seen: dict[Any, int] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue  # `<<: *anchor` merges may be overridden by explicit keys
                    key = self.construct_object(key_node, deep=True)
                    try:
                        first = seen.get(key)
                    except TypeError:  # unhashable key: let PyYAML report it
                        continue
                    line = key_node.start_mark.line + 1
                    if first is not None:
                        raise _DuplicateKey(key, line, first)
                    seen[key] = line
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping.

    Raises:
        ConfigError: the file is missing or a folder, not UTF-8 text, not valid YAML, repeats a key
            (naming the key and both lines), or is not a mapping at the top level.
    """
    import yaml

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, expected a YAML config file")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); save the config as UTF-8"
        ) from None
    try:
        data = yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as dup:
        raise ConfigError(
            f"{path}: line {dup.line}: duplicate key {dup.key!r} (first given on line {dup.first_line}); "
            "keep one of them"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


BASE_KEY = "base"
PRESET_SUFFIX = ".yaml"


def presets_dir() -> Path:
    """The folder of the YAML presets shipped with the package (``semantic_genesis/configs``)."""
    return Path(__file__).resolve().parent / "configs"


def available_presets() -> list[str]:
    """Names of the shipped presets (file names without ``.yaml``), sorted."""
    folder = presets_dir()
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(PRESET_SUFFIX)] for p in folder.glob(f"*{PRESET_SUFFIX}"))


def preset_path(name: str) -> Path | None:
    """The file of shipped preset ``name`` (with or without ``.yaml``), or ``None``."""
    stem = name[: -len(PRESET_SUFFIX)] if name.endswith(PRESET_SUFFIX) else name
    if not stem or "/" in stem or "\\" in stem or stem.startswith("."):
        return None
    path = presets_dir() / f"{stem}{PRESET_SUFFIX}"
    return path if path.is_file() else None


def preset_description(name: str) -> str:
    """The first comment line of a preset (its one-line description), ``""`` when it has none."""
    path = preset_path(name)
    if path is None:
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(available_presets())}")
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        return stripped.lstrip("#").strip() if stripped.startswith("#") else ""
    return ""


def resolve_config_path(spec: str | Path) -> Path:
    """The YAML file meant by ``--config SPEC``: an existing file, else the shipped preset of that name.

    Raises:
        ConfigError: neither a file nor a preset; the message suggests close preset names.
    """
    import difflib

    path = Path(spec).expanduser()
    if path.is_file() or path.is_dir():
        return path  # read_yaml reports a folder
    text = str(spec)
    preset = preset_path(text)
    if preset is not None:
        return preset
    stem = path.name[: -len(PRESET_SUFFIX)] if path.name.endswith(PRESET_SUFFIX) else path.name
    if preset_path(stem) is not None:  # e.g. an old `configs/NAME.yaml` path from a source checkout
        raise ConfigError(f"{text}: config file not found; the shipped preset of that name is --config {stem}")
    close = difflib.get_close_matches(stem, available_presets(), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise ConfigError(
        f"{text}: config file not found, and no shipped preset has that name{hint} "
        "('semantic-genesis configs' lists the presets)"
    )


def _merge(base: dict[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, anything else (lists included) is replaced by ``child``."""
    merged = dict(base)
    for key, value in child.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def read_config_file(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML config, resolving ``base: OTHER.yaml``.

    ``OTHER.yaml`` is a path relative to this file or, when no such file exists, the name of a
    shipped preset, so a config of one's own can extend a preset (``base: models_genesis_3d``). The
    file's own keys are deep-merged over its base's, so a variant (e.g. the preset
    ``semantic_inpainting_3d``) states only what differs from the one it extends. Bases may have bases;
    a cycle or a missing base is a :class:`ConfigError`.
    """
    path = Path(path).resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise ConfigError(f"{path}: '{BASE_KEY}' files form a cycle ({chain})")
    data = read_yaml(path)
    base = data.pop(BASE_KEY, None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: '{BASE_KEY}' must be a file name, got {base!r}")
    base_path = path.parent / base
    if not base_path.is_file():
        preset = preset_path(base)
        if preset is None:
            raise ConfigError(f"{path}: base config {base_path} not found (nor a shipped preset named {base!r})")
        base_path = preset
    return _merge(read_config_file(base_path, (*_seen, path)), data)


def load_config(path: str | Path | None = None, overrides: Sequence[Override] = (), cls: type[T] = Config) -> T:  # type: ignore[assignment]
    """Load a config: defaults <- YAML file (optional, with its ``base:`` chain) <- ``key=value`` overrides.

    ``path`` is a file or the name of a shipped preset (see :func:`resolve_config_path`). The file is
    checked on its own first, so an error names the file when the file is wrong and says
    ``command line`` when an override is. A config saved in a run folder (``config.yaml``) loads back
    to an equal object.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = resolve_config_path(path)
        data = read_config_file(path)
        try:
            from_dict(cls, data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    try:
        return from_dict(cls, apply_overrides(data, overrides, cls))
    except ConfigError as exc:
        raise ConfigError(f"command line: {exc}") from None


def replace(cfg: T, **changes: Any) -> T:
    """``dataclasses.replace`` with dotted keys: ``replace(cfg, **{"train.batch_size": 4})``.

    Values are checked exactly as YAML values would be.
    """
    data = to_dict(cfg)
    for key, value in changes.items():
        parts = key.split(".")
        node = data
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"{key}: {part} is not a section")
            node = node[part]
        node[parts[-1]] = to_dict(value) if dataclasses.is_dataclass(value) else value
    return from_dict(type(cfg), data)


def dump_yaml(cfg: Any) -> str:
    """The config as YAML text (sections in declaration order)."""
    import yaml

    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML to ``path`` (atomically) and return the path."""
    from semantic_genesis.utils.atomic import write_text

    path = Path(path)
    write_text(path, "# resolved semantic-genesis config\n" + dump_yaml(cfg))
    return path
