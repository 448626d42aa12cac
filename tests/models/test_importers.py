"""Importers and exporter for the official checkpoints: layouts, equivalence, safety, bad files."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from semantic_genesis.errors import CheckpointError
from semantic_genesis.models import UNet3D, YNet3D, load_pretrained, load_weights, save_weights
from semantic_genesis.models.importers import (
    UntrustedCheckpointError,
    export_models_genesis,
    import_checkpoint,
    import_state_dict,
    infer_architecture,
    torch_load,
)
from tests.models.official_reference import OfficialUNet3D


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every float parameter and buffer distinct random values (so swapped keys would show)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.dim() > 1:
                t.mul_(1 + 0.1 * torch.randn(t.shape, generator=g))
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1 + (1.0 if name.endswith("bn1.weight") else 0.0))
    return model


def save_official(model: torch.nn.Module, path, legacy: bool = False, **extra) -> None:
    """Save like the official trainer: DataParallel ``module.`` keys inside ``{'state_dict': ...}``."""
    ckpt = {"epoch": 7, "state_dict": {"module." + k: v for k, v in model.state_dict().items()}, **extra}
    torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)


@pytest.mark.parametrize("legacy", [False, True])
def test_official_layout_imports_and_reproduces_outputs(tmp_path, legacy):
    torch.manual_seed(0)
    official = randomise(OfficialUNet3D().eval())
    path = tmp_path / "Genesis_Chest_CT.pt"
    save_official(official, path, legacy=legacy, best_loss=np.float64(0.01))  # numpy scalar is allow-listed
    result = import_state_dict(path, fmt="models_genesis")
    assert result.architecture == "unet3d" and result.arch_args["width"] == 1.0
    assert result.arch_args["norm"] == "batch_stats" and not result.skipped and not result.missing
    assert len(result.state_dict) == 106
    ours = result.model.eval()
    x = torch.rand(2, 1, 16, 16, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = official(x)
        got = ours(x)
    assert torch.allclose(got, expected, atol=1e-5), float((got - expected).abs().max())
    # Batch statistics were used in eval mode by both (output differs from a per-sample run).
    with torch.no_grad():
        assert not torch.allclose(ours(x[:1]), got[:1], atol=1e-4)


def test_semantic_genesis_layout_is_filtered_and_reported(tmp_path):
    torch.manual_seed(0)
    ynet = randomise(YNet3D(width=0.125, num_classes=6))
    sd = {}
    for k, v in ynet.state_dict().items():
        # The released SG file keeps the encoder under ``classficationNet.`` (README loader, §3.4).
        sd["module." + ("classficationNet." + k if k.startswith("down_tr") else k)] = v
    sd["module.projection_head.0.weight"] = torch.zeros(4, 8)
    sd["module.prototypes.weight"] = torch.zeros(3, 4)
    sd["module.extra_layer.weight"] = torch.zeros(2)
    path = tmp_path / "semantic_genesis_chest_ct.pt"
    torch.save({"state_dict": sd}, path)
    result = import_state_dict(path, fmt="semantic_genesis")
    assert result.architecture == "ynet3d" and result.arch_args["num_classes"] == 6
    assert sorted(result.skipped) == ["extra_layer.weight", "projection_head.0.weight", "prototypes.weight"]
    assert result.missing == []
    for k, v in ynet.state_dict().items():
        assert torch.equal(result.state_dict[k], v), k
    # Auto-detection picks the SG rules.
    assert import_state_dict(path, fmt="auto").format == "semantic_genesis"


def test_semantic_genesis_missing_keys_are_not_saved_as_pretrained(tmp_path):
    unet = randomise(UNet3D(width=0.125))
    sd = {"module." + k: v for k, v in unet.state_dict().items() if not k.startswith("out_tr")}
    torch.save({"state_dict": sd}, tmp_path / "sg.pt")
    out = tmp_path / "sg.safetensors"
    result = import_checkpoint(tmp_path / "sg.pt", out, fmt="semantic_genesis")
    assert result.missing == ["out_tr.final_conv.weight", "out_tr.final_conv.bias"]
    state_dict, meta = load_weights(out)
    assert "out_tr.final_conv.weight" not in state_dict
    assert meta["source"]["missing_keys"] == result.missing
    report = load_pretrained(UNet3D(width=0.125), out, strict=False)
    assert report.missing == result.missing and len(report.loaded) == 104


def test_models_genesis_import_is_strict(tmp_path):
    unet = UNet3D(width=0.125)
    sd = {"module." + k: v for k, v in unet.state_dict().items()}
    sd["module.extra.weight"] = torch.zeros(1)
    torch.save({"state_dict": sd}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="unexpected key.*extra.weight"):
        import_state_dict(tmp_path / "x.pt", fmt="models_genesis")


def test_bare_state_dict_and_infer_architecture(tmp_path):
    unet = UNet3D(in_channels=2, out_channels=3, width=0.25, skip_connections=False)
    torch.save(unet.state_dict(), tmp_path / "bare.pt")
    result = import_state_dict(tmp_path / "bare.pt")
    assert result.arch_args | {} == {**unet.arch_args}
    name, args = infer_architecture(YNet3D(width=0.125, num_classes=3).state_dict())
    assert name == "ynet3d" and args["num_classes"] == 3 and args["head_hidden"] == 128


def test_export_then_import_is_lossless(tmp_path):
    model = randomise(YNet3D(width=0.125, num_classes=4))
    save_weights(model, tmp_path / "w.safetensors", metadata={"method": "semantic_genesis"})
    export_models_genesis(tmp_path / "w.safetensors", tmp_path / "official.pt")
    raw = torch.load(tmp_path / "official.pt", weights_only=True)  # loads without trust
    assert set(raw) == {"state_dict"}
    assert all(k.startswith("module.") for k in raw["state_dict"])
    assert list(raw["state_dict"])[0] == "module.down_tr64.ops.0.conv1.weight"  # the model's key order
    import_checkpoint(tmp_path / "official.pt", tmp_path / "back.safetensors", fmt="models_genesis")
    back, meta = load_weights(tmp_path / "back.safetensors")
    original = model.state_dict()
    assert list(back) == list(original)
    assert all(torch.equal(back[k], original[k]) and back[k].dtype == original[k].dtype for k in original)
    assert meta["architecture"] == "ynet3d" and meta["arch_args"]["num_classes"] == 4
    # --unet-only keeps exactly the U-Net keys.
    export_models_genesis(tmp_path / "w.safetensors", tmp_path / "unet.pt", unet_only=True)
    keys = torch.load(tmp_path / "unet.pt", weights_only=True)["state_dict"]
    assert len(keys) == 106 and not any("clc_out" in k for k in keys)


def test_untrusted_pickle_needs_trust(tmp_path):
    unet = UNet3D(width=0.125)
    path = tmp_path / "with_args.pt"
    save_official(unet, path, args=argparse.Namespace(lr=1.0, batch_size=6))
    with pytest.raises(UntrustedCheckpointError, match=r"argparse\.Namespace.*trust=True"):
        import_state_dict(path)
    with pytest.warns(UserWarning, match="weights_only=False"):
        result = import_state_dict(path, trust=True)
    assert len(result.state_dict) == 106


@pytest.mark.parametrize("kind", ["text", "truncated_zip", "truncated_legacy", "empty", "no_state_dict", "missing"])
def test_bad_files_raise_checkpoint_error(tmp_path, kind):
    path = tmp_path / f"{kind}.pt"
    unet = UNet3D(width=0.125)
    if kind == "text":
        path.write_text("this is not a checkpoint\n")
    elif kind.startswith("truncated"):
        save_official(unet, path, legacy=kind.endswith("legacy"))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "no_state_dict":
        torch.save({"epoch": 3, "note": "x"}, path)
    with pytest.raises(CheckpointError, match=str(path.name)):
        torch_load(path) if kind != "no_state_dict" else import_state_dict(path)
    if kind == "no_state_dict":
        with pytest.raises(CheckpointError, match="no state dict found; top-level entries: epoch, note"):
            import_state_dict(path)
