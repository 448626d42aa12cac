"""safetensors weights with metadata, load_pretrained reports, shape/arch mismatches."""

from __future__ import annotations

import pytest
import torch

from semantic_genesis.config import Config
from semantic_genesis.errors import CheckpointError
from semantic_genesis.models import (
    EncoderClassifier3D,
    UNet2D,
    UNet3D,
    YNet3D,
    build_model_from_weights,
    load_pretrained,
    load_weights,
    save_weights,
)
from semantic_genesis.models.importers import import_checkpoint
from semantic_genesis.models.loading import describe_weights
from semantic_genesis.models.state import apply_prefix_map
from tests.models.test_importers import randomise, save_official


def test_save_load_roundtrip_with_metadata(tmp_path):
    model = randomise(UNet3D(width=0.125, norm="batch"))
    path = save_weights(
        model,
        tmp_path / "w.safetensors",
        metadata={"method": "models_genesis", "input_size": (64, 64, 32),
                  "intensity_window": {"hu_min": -1000, "hu_max": 1000}, "config": Config()},
    )
    state_dict, meta = load_weights(path)
    assert list(state_dict) == list(model.state_dict())
    assert all(torch.equal(state_dict[k], v) for k, v in model.state_dict().items())
    assert meta["architecture"] == "unet3d" and meta["arch_args"] == model.arch_args
    assert meta["input_size"] == [64, 64, 32] and meta["method"] == "models_genesis"
    assert meta["config"]["model"]["name"] == "unet3d" and meta["library_version"]
    assert meta["num_parameters"] == sum(p.numel() for p in model.parameters())
    rebuilt = build_model_from_weights(path).eval()
    x = torch.rand(2, 1, 16, 16, 8)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model.eval()(x))
    assert not list(tmp_path.glob(".*"))  # the atomic write left no temporary file


def test_imported_mg_checkpoint_into_classifier_encoder_and_segmentation_model(tmp_path):
    unet = randomise(UNet3D(width=0.125))
    save_official(unet, tmp_path / "mg.pt")
    import_checkpoint(tmp_path / "mg.pt", tmp_path / "mg.safetensors")
    original = unet.state_dict()

    clf = EncoderClassifier3D(None, num_classes=2, width=0.125)
    report = load_pretrained(clf, tmp_path / "mg.safetensors", strict=False)
    assert len(report.loaded) == 56 and all(k.startswith("down_tr") for k in report.loaded)
    assert report.missing == ["head.fc.weight", "head.fc.bias"]
    assert len(report.unexpected) == 50 and all(k.split(".")[0] in ("up_tr256", "up_tr128", "up_tr64", "out_tr")
                                                for k in report.unexpected)
    assert "encoder_classifier3d" in report.warnings[0]  # architecture disagreement is reported
    assert all(torch.equal(clf.state_dict()[k], original[k]) for k in report.loaded)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_pretrained(EncoderClassifier3D(None, num_classes=2, width=0.125), tmp_path / "mg.safetensors")

    seg = UNet3D(width=0.125, out_channels=1)
    report = load_pretrained(seg, tmp_path / "mg.safetensors")
    assert report.complete and len(report.loaded) == 106 and report.warnings == []
    # Also straight from the official .pt, and by name.
    report = load_pretrained("unet3d", tmp_path / "mg.pt")
    assert report.complete and report.model.arch_args["width"] == 0.125
    assert torch.equal(report.model.state_dict()["out_tr.final_conv.weight"], original["out_tr.final_conv.weight"])


def test_segmentation_with_more_classes_loads_all_but_final_conv(tmp_path):
    save_weights(randomise(UNet3D(width=0.125)), tmp_path / "w.safetensors")
    seg = UNet3D(width=0.125, out_channels=3)
    report = load_pretrained(seg, tmp_path / "w.safetensors", strict=False)
    assert report.mismatched == [("out_tr.final_conv.weight", (1, 8, 1, 1, 1), (3, 8, 1, 1, 1)),
                                 ("out_tr.final_conv.bias", (1,), (3,))]
    assert len(report.loaded) == 104 and "arguments differ" in report.warnings[0]


@pytest.mark.parametrize(
    "target, key, file_shape, model_shape",
    [
        (lambda: UNet3D(width=0.25), "down_tr64.ops.0.conv1.weight", (4, 1, 3, 3, 3), (8, 1, 3, 3, 3)),
        (lambda: UNet2D(width=0.125), "down_tr64.ops.0.conv1.weight", (4, 1, 3, 3, 3), (4, 1, 3, 3)),
    ],
)
def test_shape_mismatch_names_first_key_and_both_shapes(tmp_path, target, key, file_shape, model_shape):
    save_weights(UNet3D(width=0.125), tmp_path / "w.safetensors")
    message = f"shape mismatch at {key}: checkpoint {file_shape} vs model {model_shape}".replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(CheckpointError, match=message):
        load_pretrained(target(), tmp_path / "w.safetensors")


def test_metadata_disagreement_is_reported(tmp_path):
    save_weights(YNet3D(width=0.125, num_classes=3), tmp_path / "y.safetensors")
    report = load_pretrained("unet3d", tmp_path / "y.safetensors", strict=False)
    assert report.warnings == ["y.safetensors: metadata says architecture 'ynet3d', but 'unet3d' was requested"]
    assert {k.split(".")[0] for k in report.unexpected} == {"clc_out"}
    with pytest.raises(CheckpointError, match="metadata says architecture 'ynet3d'"):
        load_pretrained("unet3d", tmp_path / "y.safetensors", strict=True)
    report = load_pretrained(UNet3D(width=0.125, norm="group"), tmp_path / "y.safetensors", strict=False)
    assert any("norm='batch_stats' (model 'group')" in w for w in report.warnings)


def test_prefix_map_and_no_match(tmp_path):
    unet = UNet3D(width=0.125)
    prefixed = {"backbone." + k: v for k, v in unet.state_dict().items()}
    save_weights(prefixed, tmp_path / "p.safetensors", architecture=None)
    with pytest.raises(CheckpointError, match="no key matches the model.*backbone"):
        load_pretrained(UNet3D(width=0.125), tmp_path / "p.safetensors", strict=False)
    report = load_pretrained(UNet3D(width=0.125), tmp_path / "p.safetensors", prefix_map={"backbone.": ""})
    assert report.complete
    renamed, dropped = apply_prefix_map({"a.x": torch.zeros(1), "b.y": torch.zeros(1)}, {"a.": "c.", "b.": None})
    assert list(renamed) == ["c.x"] and dropped == ["b.y"]


def test_bad_weights_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(tmp_path / "nope.safetensors")
    save_weights(UNet3D(width=0.125), tmp_path / "w.safetensors")
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="t.safetensors: not a readable safetensors file"):
        load_weights(tmp_path / "t.safetensors")
    (tmp_path / "junk.safetensors").write_text("hello")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load_weights(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load_pretrained(UNet3D(width=0.125), tmp_path / "junk.safetensors")


def test_describe_weights(tmp_path):
    save_weights(YNet3D(width=0.125, num_classes=3), tmp_path / "y.safetensors", metadata={"method": "semantic_genesis"})
    info = describe_weights(tmp_path / "y.safetensors")
    model = YNet3D(width=0.125, num_classes=3)
    assert info["num_parameters"] == sum(p.numel() for p in model.parameters())
    assert info["num_tensors"] == len(model.state_dict()) and info["metadata"]["method"] == "semantic_genesis"
    assert info["groups"]["clc_out"]["parameters"] == sum(p.numel() for p in model.clc_out.parameters())


def test_wrapped_models_save_and_load_without_module_prefix(tmp_path):
    model = randomise(UNet3D(width=0.125))
    save_weights(torch.nn.DataParallel(model), tmp_path / "w.safetensors")
    state_dict, meta = load_weights(tmp_path / "w.safetensors")
    assert list(state_dict)[0] == "down_tr64.ops.0.conv1.weight" and meta["architecture"] == "unet3d"
    target = torch.nn.DataParallel(UNet3D(width=0.125))
    report = load_pretrained(target, tmp_path / "w.safetensors")
    assert report.complete and report.model is target.module
    assert torch.equal(target.module.out_tr.final_conv.weight, model.out_tr.final_conv.weight)
