"""ImageNet ResNet-18 weights (torchvision ``resnet18-*.pth``, segmentation_models_pytorch
``Unet("resnet18")``) into the ResNet-18 U-Net: synthetic state dicts with the public key names and
shapes of both layouts (nothing is downloaded)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from semantic_genesis.cli import main
from semantic_genesis.errors import CheckpointError
from semantic_genesis.models import load_pretrained, load_weights
from semantic_genesis.models.importers import import_state_dict, infer_architecture
from semantic_genesis.models.resunet2d import ResUNet2D

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn(prefix: str, c: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.weight": 1 + 0.1 * torch.randn(c, generator=g),
        f"{prefix}.bias": 0.1 * torch.randn(c, generator=g),
        f"{prefix}.running_mean": 0.1 * torch.randn(c, generator=g),
        f"{prefix}.running_var": 0.5 + torch.rand(c, generator=g),
        f"{prefix}.num_batches_tracked": torch.tensor(0),
    }


def _conv(c_out: int, c_in: int, k: int, g: torch.Generator) -> torch.Tensor:
    return torch.randn(c_out, c_in, k, k, generator=g) * (2.0 / (c_in * k * k)) ** 0.5


def torchvision_resnet18(seed: int = 0) -> dict[str, torch.Tensor]:
    """The key names and shapes of torchvision's ``resnet18().state_dict()``, random values."""
    g = torch.Generator().manual_seed(seed)
    sd = {"conv1.weight": _conv(64, 3, 7, g), **_bn("bn1", 64, g)}
    previous = 64
    for i, c in enumerate((64, 128, 256, 512), start=1):
        for b in (0, 1):
            c_in = previous if b == 0 else c
            p = f"layer{i}.{b}"
            sd[f"{p}.conv1.weight"] = _conv(c, c_in, 3, g)
            sd.update(_bn(f"{p}.bn1", c, g))
            sd[f"{p}.conv2.weight"] = _conv(c, c, 3, g)
            sd.update(_bn(f"{p}.bn2", c, g))
            if b == 0 and i > 1:
                sd[f"{p}.downsample.0.weight"] = _conv(c, c_in, 1, g)
                sd.update(_bn(f"{p}.downsample.1", c, g))
        previous = c
    sd["fc.weight"] = 0.01 * torch.randn(1000, 512, generator=g)
    sd["fc.bias"] = torch.zeros(1000)
    return sd


def smp_unet_resnet18(classes: int = 2, in_channels: int = 3, seed: int = 1) -> dict[str, torch.Tensor]:
    """The key names and shapes of ``segmentation_models_pytorch.Unet("resnet18", classes=...)``."""
    g = torch.Generator().manual_seed(seed)
    sd = {"encoder." + k: v for k, v in torchvision_resnet18(seed).items() if not k.startswith("fc.")}
    if in_channels == 1:  # smp patches its first conv by summing the RGB filters
        sd["encoder.conv1.weight"] = sd["encoder.conv1.weight"].sum(1, keepdim=True)
    ins, skips, outs = (512, 256, 128, 64, 32), (256, 128, 64, 64, 0), (256, 128, 64, 32, 16)
    for n, (c_in, skip, c) in enumerate(zip(ins, skips, outs)):
        sd[f"decoder.blocks.{n}.conv1.0.weight"] = _conv(c, c_in + skip, 3, g)
        sd.update(_bn(f"decoder.blocks.{n}.conv1.1", c, g))
        sd[f"decoder.blocks.{n}.conv2.0.weight"] = _conv(c, c, 3, g)
        sd.update(_bn(f"decoder.blocks.{n}.conv2.1", c, g))
    sd["segmentation_head.0.weight"] = _conv(classes, 16, 3, g)
    sd["segmentation_head.0.bias"] = 0.1 * torch.randn(classes, generator=g)
    return sd


def reference_resnet18_features(sd: dict[str, torch.Tensor], x: torch.Tensor, prefix: str = "") -> torch.Tensor:
    """ResNet-18 ``layer4`` output written with functional ops from a torchvision state dict (eval mode)."""

    def bn(t, p):
        return F.batch_norm(t, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"])

    out = F.relu(bn(F.conv2d(x, sd[prefix + "conv1.weight"], stride=2, padding=3), prefix + "bn1"))
    out = F.max_pool2d(out, 3, stride=2, padding=1)
    for i in range(1, 5):
        for b in (0, 1):
            p = f"{prefix}layer{i}.{b}"
            stride = 2 if (b == 0 and i > 1) else 1
            y = F.relu(bn(F.conv2d(out, sd[f"{p}.conv1.weight"], stride=stride, padding=1), f"{p}.bn1"))
            y = bn(F.conv2d(y, sd[f"{p}.conv2.weight"], padding=1), f"{p}.bn2")
            short = out
            if f"{p}.downsample.0.weight" in sd:
                short = bn(F.conv2d(out, sd[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1")
            out = F.relu(y + short)
    return out


def test_synthetic_layouts_have_the_public_key_counts_and_are_recognised():
    assert len(torchvision_resnet18()) == 122  # 62 parameters + 60 batch-norm buffers
    assert len(smp_unet_resnet18()) == 120 + 5 * 12 + 2
    assert infer_architecture(torchvision_resnet18()) == (
        "resunet2d", {"in_channels": 3, "out_channels": 1, "width": 1.0, "norm": "batch"})
    assert infer_architecture(smp_unet_resnet18(classes=4, in_channels=1))[1]["out_channels"] == 4


@pytest.mark.parametrize("rgb_to_grey", ["sum", "mean"])
def test_torchvision_resnet18_into_the_encoder_grey(tmp_path, rgb_to_grey):
    sd = torchvision_resnet18()
    path = tmp_path / "resnet18-f37072d3.pth"
    torch.save(sd, path)
    result = import_state_dict(path, fmt="auto", rgb_to_grey=rgb_to_grey)
    assert result.format == "torchvision_resnet18" and result.architecture == "resunet2d"
    assert result.arch_args["in_channels"] == 1 and result.first_conv == f"{rgb_to_grey} of the RGB filters"
    assert result.skipped == ["fc.weight", "fc.bias"]
    assert sorted(result.used) == sorted(k for k in sd if not k.startswith("fc."))
    model = result.model
    assert set(result.missing) == {k for k in model.state_dict() if not k.startswith("encoder.")}
    for key in result.used:
        if key != "conv1.weight":
            assert torch.equal(model.state_dict()["encoder." + key], sd[key]), key
    reduce = sd["conv1.weight"].sum if rgb_to_grey == "sum" else sd["conv1.weight"].mean
    assert torch.allclose(model.state_dict()["encoder.conv1.weight"], reduce(1, keepdim=True))

    # Summed filters on a grey image reproduce the RGB network on its copy (x, x, x).
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = model.eval().encode(x).bottleneck
        rgb = reference_resnet18_features(sd, x.expand(-1, 3, -1, -1))
    if rgb_to_grey == "sum":
        assert torch.allclose(ours, rgb, atol=1e-4)
    else:
        assert not torch.allclose(ours, rgb, atol=1e-2)


def test_torchvision_rgb_model_keeps_the_filters_and_matches_the_reference(tmp_path):
    sd = torchvision_resnet18(seed=5)
    torch.save({"state_dict": sd}, tmp_path / "r18.pth")
    result = import_state_dict(tmp_path / "r18.pth", fmt="torchvision_resnet18", in_channels=3)
    assert result.first_conv == "as in the file"
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.allclose(result.model.eval().encode(x).bottleneck, reference_resnet18_features(sd, x), atol=1e-4)


def test_smp_unet_resnet18_maps_the_whole_network(tmp_path):
    sd = smp_unet_resnet18(classes=2)
    sd["classification_head.3.weight"] = torch.zeros(4, 512)  # smp aux_params head: skipped
    path = tmp_path / "unet_resnet18.pth"
    torch.save(sd, path)
    result = import_state_dict(path)  # auto-detected
    assert result.format == "smp_resnet18_unet" and result.arch_args["out_channels"] == 2
    assert result.skipped == ["classification_head.3.weight"] and result.missing == []
    state = result.model.state_dict()
    assert len(result.state_dict) == len(state) == 182
    assert torch.equal(state["decoder.0.conv1.weight"], sd["decoder.blocks.0.conv1.0.weight"])
    assert torch.equal(state["decoder.4.bn2.running_var"], sd["decoder.blocks.4.conv2.1.running_var"])
    assert torch.equal(state["out_conv.bias"], sd["segmentation_head.0.bias"])
    assert torch.equal(state["encoder.layer3.0.downsample.1.weight"], sd["encoder.layer3.0.downsample.1.weight"])
    # A one-channel smp model (encoder_in_channels=1) loads as it is.
    torch.save(smp_unet_resnet18(in_channels=1), tmp_path / "grey.pth")
    grey = import_state_dict(tmp_path / "grey.pth", fmt="smp_resnet18_unet")
    assert grey.first_conv == "as in the file" and grey.arch_args["in_channels"] == 1


def test_shape_mismatch_and_foreign_keys_are_one_line_errors(tmp_path):
    sd = smp_unet_resnet18()
    sd["decoder.blocks.1.conv2.0.weight"] = torch.zeros(100, 128, 3, 3)  # decoder_channels changed
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as err:
        import_state_dict(tmp_path / "bad.pth", fmt="smp_resnet18_unet")
    message = str(err.value)
    assert "\n" not in message and "'decoder.blocks.1.conv2.0.weight'" in message and "(100, 128, 3, 3)" in message

    resnet34ish = torchvision_resnet18()
    resnet34ish["layer1.2.conv1.weight"] = torch.zeros(64, 64, 3, 3)
    torch.save(resnet34ish, tmp_path / "r34.pth")
    with pytest.raises(CheckpointError, match=r"'layer1\.2\.conv1\.weight' has no place"):
        import_state_dict(tmp_path / "r34.pth", fmt="torchvision_resnet18")

    partial = {k: v for k, v in torchvision_resnet18().items() if not k.startswith("layer4.1.")}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match=r"not a complete torchvision_resnet18 state dict: 12 tensor\(s\) missing"):
        import_state_dict(tmp_path / "partial.pth", fmt="torchvision_resnet18")


def test_weights_import_cli_reports_used_and_skipped_keys_and_loads_for_transfer(tmp_path, capsys):
    sd = torchvision_resnet18()
    torch.save(sd, tmp_path / "resnet18-f37072d3.pth")
    out = tmp_path / "imagenet.safetensors"
    code = main(["weights", "import", "--format", "torchvision_resnet18", str(tmp_path / "resnet18-f37072d3.pth"), str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "used 120 key(s)" in text and "layer4.1.bn2.running_var" in text
    assert "skipped 2 key(s): fc.weight, fc.bias" in text and "first conv: sum of the RGB filters" in text
    state, meta = load_weights(out)
    assert meta["architecture"] == "resunet2d" and meta["input_size"] == [224, 224]
    assert meta["source"]["first_conv"] == "sum of the RGB filters"
    assert all(k.startswith("encoder.") for k in state) and len(state) == 120
    # The encoder loads into a fresh ResNet-18 U-Net (decoder left as initialised).
    model = ResUNet2D()
    report = load_pretrained(model, out, strict=False)
    assert len(report.loaded) == 120 and all(k.startswith(("decoder.", "out_conv.")) for k in report.missing)
    assert torch.equal(model.state_dict()["encoder.layer2.0.downsample.0.weight"], sd["layer2.0.downsample.0.weight"])


def test_folding_the_imagenet_normalisation_reproduces_the_normalised_stem(tmp_path):
    sd = torchvision_resnet18(seed=2)
    torch.save(sd, tmp_path / "r18.pth")
    result = import_state_dict(tmp_path / "r18.pth", fold_normalisation=True)
    assert result.first_conv == "sum of the RGB filters; ImageNet mean/std normalisation folded into conv1 and bn1.running_mean"
    encoder = result.model.eval().encoder
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(6))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    normalised = (x.expand(-1, 3, -1, -1) - mean) / std
    with torch.no_grad():
        ours = encoder(x)[0]  # the stem: relu(bn1(conv1(x)))
        ref = F.relu(F.batch_norm(F.conv2d(normalised, sd["conv1.weight"], stride=2, padding=3), sd["bn1.running_mean"],
                                  sd["bn1.running_var"], sd["bn1.weight"], sd["bn1.bias"]))
        plain = import_state_dict(tmp_path / "r18.pth").model.eval().encoder(x)[0]
    inner = (slice(None), slice(None), slice(2, 14), slice(2, 14))  # away from the zero padding
    assert torch.allclose(ours[inner], ref[inner], atol=1e-4)
    assert not torch.allclose(plain[inner], ref[inner], atol=1e-2)  # without folding the input is off
    one_channel = smp_unet_resnet18(in_channels=1)
    torch.save(one_channel, tmp_path / "grey.pth")
    with pytest.raises(CheckpointError, match=r"needs the RGB first conv \(encoder.conv1.weight with 3 input channels\)"):
        import_state_dict(tmp_path / "grey.pth", fold_normalisation=True)
