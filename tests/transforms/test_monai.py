"""GenesisPresetd: the presets as a MONAI dictionary transform (per sample, seeded by MONAI, metadata kept)."""

from __future__ import annotations

import itertools
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

monai = pytest.importorskip("monai")

from monai.data import DataLoader, Dataset, MetaTensor  # noqa: E402
from monai.transforms import (  # noqa: E402
    Compose,
    EnsureChannelFirstd,
    LoadImaged,
    RandSpatialCropd,
    ScaleIntensityRanged,
)
from monai.utils import set_determinism  # noqa: E402

from semantic_genesis.errors import ConfigError, DataError  # noqa: E402
from semantic_genesis.io.volumes import write_volume  # noqa: E402
from semantic_genesis.phantoms.ct import make_ct_patient  # noqa: E402
from semantic_genesis.transforms import build_preset  # noqa: E402
from semantic_genesis.transforms.monai import SEED_BOUND, GenesisPresetd  # noqa: E402

from .conftest import gen  # noqa: E402

CROP = (32, 32, 16)


def _meta_sample(shape=(1, 24, 20, 12), seed=0) -> MetaTensor:
    affine = torch.diag(torch.tensor([0.7, 0.7, 2.5, 1.0], dtype=torch.float64))
    affine[:3, 3] = torch.tensor([-120.0, -90.0, 30.0])
    return MetaTensor(torch.rand(shape, generator=gen(seed)), affine=affine, meta={"filename_or_obj": "case_7.nii.gz"})


@pytest.mark.parametrize("name", ["models_genesis", "semantic_genesis", "inpaint"])
def test_pair_is_the_preset_with_the_seed_drawn_from_monai_state(name, backend):
    x = _meta_sample()
    options = {} if name == "inpaint" else {"shuffle_windows": 200}
    transform = GenesisPresetd(keys="image", preset=name, **options)
    transform.set_random_state(seed=11)
    out = transform({"image": x, "label": 3})
    seed = int(np.random.RandomState(11).randint(0, SEED_BOUND, dtype=np.int64))
    expected = build_preset(name, spatial_dims=3, **options)(x.as_tensor()[None], gen(seed))
    assert torch.equal(out["input"].as_tensor(), expected[0][0])
    assert torch.equal(out["target"].as_tensor(), expected[1][0])
    assert out["image"] is x and out["label"] == 3  # the source entry is left as it was
    for key in ("input", "target"):
        assert isinstance(out[key], MetaTensor)
        assert torch.equal(out[key].affine, x.affine) and out[key].meta["filename_or_obj"] == "case_7.nii.gz"
        assert out[key].meta is not x.meta  # a copy: editing one sample's meta never touches the other


def test_several_keys_share_the_draws_and_need_their_own_output_names():
    x = _meta_sample(seed=1)
    transform = GenesisPresetd(keys=("t1", "t2"), preset="models_genesis", input_key=("t1_in", "t2_in"),
                               target_key=("t1_out", "t2_out"), shuffle_windows=200).set_random_state(3)
    out = transform({"t1": x, "t2": x.clone()})
    assert torch.equal(out["t1_in"], out["t2_in"]) and torch.equal(out["t1_out"], out["t2_out"])
    # picklable, for DataLoader workers started with "spawn" (macOS, Windows): same state, same pair
    copy = pickle.loads(pickle.dumps(transform))
    assert torch.equal(copy({"t1": x, "t2": x})["t2_in"], transform({"t1": x, "t2": x})["t2_in"])
    with pytest.raises(ConfigError, match="collide"):
        GenesisPresetd(keys=("t1", "t2"))
    with pytest.raises(ConfigError, match="spatial_dims must be 2 or 3"):
        GenesisPresetd(keys="image", spatial_dims=4)
    with pytest.raises(ConfigError, match="unknown option"):
        GenesisPresetd(keys="image", windows=3)
    with pytest.raises(DataError, match="spatial_dims=3 expected a batch"):
        GenesisPresetd(keys="image")({"image": torch.rand(8, 8, 8)})


def test_2d_samples_and_plain_arrays():
    image = np.random.default_rng(0).random((1, 40, 36)).astype(np.float32)
    transform = GenesisPresetd(keys="image", preset="nonlinear", spatial_dims=2).set_random_state(5)
    out = transform({"image": image})
    seed = int(np.random.RandomState(5).randint(0, SEED_BOUND, dtype=np.int64))
    expected = build_preset("nonlinear", spatial_dims=2)(torch.from_numpy(image), gen(seed))
    assert type(out["input"]) is torch.Tensor and out["input"].shape == (1, 40, 36)
    assert torch.equal(out["input"], expected[0]) and torch.equal(out["target"], torch.from_numpy(image))


def _flip_parity(target: torch.Tensor, image: torch.Tensor) -> tuple[int, ...] | None:
    """The spatial axes ``target`` is ``image`` flipped along, or None if it is no flip of it."""
    for count in range(4):
        for axes in itertools.combinations((1, 2, 3), count):
            if torch.equal(image.flip(axes) if axes else image, target):
                return axes
    return None


@pytest.fixture(scope="module")
def nifti_phantoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("monai_phantoms")
    paths = []
    for index in range(2):
        patient = make_ct_patient(index, seed=5, shape=(48, 48, 32))
        paths.append(str(write_volume(patient.volume, root / f"{patient.patient_id}.nii.gz", dtype="int16")))
    return paths


def _pipeline(preset: str = "models_genesis") -> Compose:
    return Compose([
        LoadImaged(keys="image", image_only=True),
        EnsureChannelFirstd(keys="image"),
        ScaleIntensityRanged(keys="image", a_min=-1000.0, a_max=1000.0, b_min=0.0, b_max=1.0, clip=True),
        RandSpatialCropd(keys="image", roi_size=CROP, random_size=False),
        GenesisPresetd(keys="image", preset=preset, spatial_dims=3, shuffle_windows=500),
    ])


def _run(paths: list[str], seed: int) -> list[dict]:
    set_determinism(seed=seed)
    try:
        dataset = Dataset([{"image": p} for p in paths * 24], transform=_pipeline())
        return list(DataLoader(dataset, batch_size=8, num_workers=2, shuffle=False))
    finally:
        set_determinism(seed=None)


def test_end_to_end_monai_pipeline_with_workers(nifti_phantoms):
    build_preset("models_genesis")(torch.rand(1, 1, *CROP), gen())  # compile the kernels before forking
    batches = _run(nifti_phantoms, seed=0)
    images = torch.cat([b["image"].as_tensor() for b in batches])
    inputs = torch.cat([b["input"].as_tensor() for b in batches])
    targets = torch.cat([b["target"].as_tensor() for b in batches])
    assert images.shape == inputs.shape == targets.shape == (48, 1, *CROP)
    assert 0.0 <= float(inputs.min()) and float(inputs.max()) <= 1.0

    # metadata: the collated outputs are MetaTensors with the (cropped) image's affine and file names
    for batch in batches:
        for key in ("input", "target"):
            assert isinstance(batch[key], MetaTensor)
            assert torch.equal(batch[key].affine, batch["image"].affine)
            assert batch[key].meta["filename_or_obj"] == batch["image"].meta["filename_or_obj"]
    assert not torch.equal(batches[0]["image"].affine[0], torch.eye(4, dtype=torch.float64))  # the real geometry

    # every target is the crop flipped along some axes (Models Genesis), P(no flip) = 0.6
    parities = [_flip_parity(t, i) for t, i in zip(targets, images)]
    assert all(p is not None for p in parities)
    unflipped = np.mean([p == () for p in parities])
    changed = (inputs != targets).flatten(1).any(1).double().mean().item()
    # the batch preset on the same crops: the same laws
    ref_in, ref_tgt = build_preset("models_genesis", shuffle_windows=500)(images, gen(1))
    ref_unflipped = np.mean([_flip_parity(t, i) == () for t, i in zip(ref_tgt, images)])
    assert abs(unflipped - 0.6) < 0.2 and abs(ref_unflipped - 0.6) < 0.2
    assert changed > 0.95 and (ref_in != ref_tgt).flatten(1).any(1).double().mean().item() > 0.95  # P = 99.5%
    # samples of different workers got different draws
    assert len({tuple(map(float, inp.flatten()[:64])) for inp in inputs}) == len(inputs)

    # reproducible with the same seed, different with another
    again = _run(nifti_phantoms, seed=0)
    other = _run(nifti_phantoms, seed=1)
    assert all(torch.equal(a["input"], b["input"]) and torch.equal(a["target"], b["target"])
               for a, b in zip(batches, again))
    assert not torch.equal(batches[0]["input"], other[0]["input"])


def test_importing_semantic_genesis_transforms_does_not_import_monai():
    code = "import sys, semantic_genesis.transforms; print('monai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
