"""``weights import --format monai_swin``: MONAI Swin checkpoints (the self-supervised ``model_swinvit.pt`` key
layout under ``module.``, a whole 2D SwinUNETR under ``swinViT.``) into swin2d / swin_unetr2d, the
architecture read from the tensors, heads reported as skipped, 3D encoders refused; and the imported
file transfers through the one load path. Synthetic state dicts with those key names; nothing is
downloaded."""

from __future__ import annotations

import pytest
import torch

from semantic_genesis.errors import CheckpointError
from semantic_genesis.models import Swin2D, load_weights
from semantic_genesis.models.importers import detect_format, import_checkpoint, import_state_dict

ARCH = {"embed_dim": 12, "depths": (1, 2, 1, 1), "num_heads": (1, 2, 4, 8), "window_size": 4, "patch_size": 2}
SSL_HEADS = ("rotation_head.weight", "rotation_head.bias", "contrastive_head.weight", "contrastive_head.bias",
             "conv.0.weight")


def monai_encoder(spatial_dims: int = 2):
    from monai.networks.nets.swin_unetr import SwinTransformer

    torch.manual_seed(4)
    return SwinTransformer(in_chans=1, embed_dim=ARCH["embed_dim"], window_size=(ARCH["window_size"],) * spatial_dims,
                           patch_size=(ARCH["patch_size"],) * spatial_dims, depths=ARCH["depths"],
                           num_heads=ARCH["num_heads"], spatial_dims=spatial_dims)


def save_ssl_layout(encoder, path) -> dict[str, torch.Tensor]:
    """As the self-supervised pre-training saves its encoder: ``{'state_dict': {'module.' + key}}``, the MLP
    named ``fc1`` / ``fc2``, and the pre-training heads beside it."""
    state = {}
    for key, value in encoder.state_dict().items():
        state["module." + key.replace(".mlp.linear1.", ".mlp.fc1.").replace(".mlp.linear2.", ".mlp.fc2.")] = value
    for name in SSL_HEADS:
        state["module." + name] = torch.randn(4, 3)
    torch.save({"epoch": 100, "state_dict": state}, path)
    return state


def test_self_supervised_encoder_layout_imports_into_swin2d(tmp_path):
    encoder = monai_encoder().eval()
    path = tmp_path / "model_swinvit.pt"
    save_ssl_layout(encoder, path)
    result = import_state_dict(path)  # format detected
    assert result.format == "monai_swin" and result.architecture == "swin2d"
    args = result.arch_args
    assert (args["embed_dim"], args["depths"], args["num_heads"]) == (12, [1, 2, 1, 1], [1, 2, 4, 8])
    assert (args["window_size"], args["patch_size"], args["final_merge"], args["in_channels"]) == (4, 2, True, 1)
    assert args["size"] is None and args["mlp_ratio"] == 4.0 and args["qkv_bias"] is True
    assert sorted(result.skipped) == sorted(SSL_HEADS) and result.missing == []  # named without module.
    assert sorted(result.state_dict) == sorted("swinViT." + k for k in encoder.state_dict())
    # the same numbers as MONAI's module with those weights (its levels computed by our encode)
    reference = Swin2D(size=None, **{**ARCH, "final_merge": True}).eval()
    reference.swinViT.load_state_dict(encoder.state_dict())
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(result.model.eval().encode(x).bottleneck, reference.encode(x).bottleneck)


def test_whole_2d_swin_unetr_imports_into_swin_unetr2d(tmp_path):
    from monai.networks.nets import SwinUNETR

    torch.manual_seed(6)
    unetr = SwinUNETR(in_channels=1, out_channels=3, spatial_dims=2, feature_size=12, depths=(1, 1, 1, 1),
                      num_heads=(1, 2, 4, 8), window_size=4)
    path = tmp_path / "swin_unetr.pt"
    torch.save({"state_dict": unetr.state_dict()}, path)
    assert detect_format(unetr.state_dict()) == "monai_swin"
    result = import_state_dict(path, fmt="monai_swin")
    assert result.architecture == "swin_unetr2d" and result.arch_args["out_channels"] == 3
    assert result.arch_args["decoder_norm"] == "instance"
    assert result.skipped == [] and result.missing == [] and len(result.state_dict) == len(unetr.state_dict())
    assert all(torch.equal(result.model.state_dict()[k], v) for k, v in unetr.state_dict().items())


def test_a_3d_encoder_is_refused_in_one_line(tmp_path):
    path = tmp_path / "model_swinvit_3d.pt"
    save_ssl_layout(monai_encoder(spatial_dims=3), path)
    with pytest.raises(CheckpointError, match=r"a 3D Swin \(patch embedding kernel \(12, 1, 2, 2, 2\)\); .*2D Swin") as info:
        import_state_dict(path)
    assert "\n" not in str(info.value)


def test_a_swin_without_final_merging_is_recognised(tmp_path):
    torch.manual_seed(0)
    ours = Swin2D(size="tiny", depths=(1, 1, 1), num_heads=(1, 2, 4), final_merge=False)
    path = tmp_path / "swin_vit.pt"
    torch.save({"swin_vit." + k[len("swinViT."):]: v for k, v in ours.state_dict().items()}, path)  # another prefix
    result = import_state_dict(path)
    assert result.architecture == "swin2d" and result.arch_args["final_merge"] is False
    assert result.arch_args["depths"] == [1, 1, 1] and result.model.feature_strides == (2, 4, 8, 8)


def test_imported_file_transfers_through_the_one_load_path(tmp_path, capsys):
    from semantic_genesis.cli import main
    from semantic_genesis.config import load_config
    from semantic_genesis.finetune import tasks
    from semantic_genesis.finetune.models import InitSpec, build_model

    path = tmp_path / "model_swinvit.pt"
    save_ssl_layout(monai_encoder(), path)
    out = tmp_path / "swinvit.safetensors"
    assert main(["weights", "import", "--format", "monai_swin", str(path), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "architecture swin2d" in printed and "rotation_head.weight" in printed
    tensors, metadata = load_weights(out)
    assert metadata["method"] == "monai_swin" and metadata["architecture"] == "swin2d"
    for preset, kind in (("finetune_dxc_swin_tiny", "dxc"), ("finetune_pxs_swin_tiny", "pxs")):
        model, report = build_model(tasks.get(kind), load_config(preset), 1, InitSpec("ssl", out))
        assert sorted(report.loaded) == sorted(tensors) and report.unused == []
        assert report.backbone == ("swin2d" if kind == "dxc" else "swin_unetr2d")


def test_import_checkpoint_writes_a_rebuildable_file(tmp_path):
    from semantic_genesis.models import build_model_from_weights

    path = tmp_path / "model_swinvit.pt"
    save_ssl_layout(monai_encoder(), path)
    out = import_checkpoint(path, tmp_path / "w.safetensors", fmt="monai_swin")
    model = build_model_from_weights(tmp_path / "w.safetensors")
    assert isinstance(model, Swin2D) and model.feature_channels == (12, 24, 48, 96, 192)
    assert out.arch_args == model.arch_args
