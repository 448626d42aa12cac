"""UNet3D: official architecture (keys, shapes, parameter counts), API, batch-statistics norm, bad input."""

from __future__ import annotations

import pytest
import torch

from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.models import EncoderClassifier3D, UNet3D, YNet3D
from semantic_genesis.models.norms import ContBatchNorm
from tests.models.conftest import OFFICIAL_CONV_SHAPES, official_unet3d_keys


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_official_parameter_count_and_keys():
    model = UNet3D()
    assert n_params(model) == 19_073_665
    keys = list(model.state_dict())
    assert len(keys) == 106
    assert sorted(keys) == sorted(official_unet3d_keys())
    encoder = sum(p.numel() for p in model.encoder_parameters())
    assert encoder == 7_027_776  # the official network's encoder
    sd = model.state_dict()
    for key, shape in OFFICIAL_CONV_SHAPES.items():
        assert tuple(sd[key].shape) == shape, key


def test_ynet3d_parameter_count_and_head_keys():
    model = YNet3D(num_classes=44)
    assert n_params(model) == 33_277_613
    assert n_params(model.clc_out) == 14_203_948
    head_keys = sorted(k for k in model.state_dict() if k.startswith("clc_out."))
    assert head_keys == sorted(
        ["clc_out.conv1.weight", "clc_out.conv1.bias", "clc_out.fc1.weight", "clc_out.fc1.bias"]
        + [f"clc_out.bn1.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
    )
    assert n_params(YNet3D(num_classes=50)) == 33_283_763


@pytest.mark.parametrize("norm", ["batch_stats", "batch", "instance", "group"])
@pytest.mark.parametrize("skips", [True, False])
def test_tiny_forward_backward(norm, skips):
    torch.manual_seed(0)
    model = UNet3D(width=0.125, norm=norm, skip_connections=skips)
    x = torch.rand(2, 1, 16, 16, 8)
    features = model.encode(x)
    assert features.bottleneck.shape == (2, model.bottleneck_channels, 2, 2, 1)
    assert [s.shape[1:] for s in features.skips] == [(8, 16, 16, 8), (16, 8, 8, 4), (32, 4, 4, 2)]
    logits = model.decode_logits(features)
    out = model(x)
    assert out.shape == x.shape
    assert torch.all((out >= 0) & (out <= 1))
    assert torch.allclose(out, torch.sigmoid(logits), atol=1e-6)  # same batch, same statistics
    out.mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.down_tr64.ops[0].conv1.weight.grad.abs().sum() > 0


def test_decode_is_activation_of_decode_logits():
    torch.manual_seed(0)
    model = UNet3D(width=0.125, norm="instance").eval()
    x = torch.rand(1, 1, 16, 16, 8)
    features = model.encode(x)
    assert torch.allclose(model.decode(features), torch.sigmoid(model.decode_logits(features)))
    assert torch.allclose(model(x), torch.sigmoid(model.forward_logits(x)))


def test_skip_connections_false_drops_concatenation_channels():
    with_skips = UNet3D(width=0.25)
    without = UNet3D(width=0.25, skip_connections=False)
    assert with_skips.up_tr256.ops[0].conv1.in_channels == 128 + 64
    assert without.up_tr256.ops[0].conv1.in_channels == 128
    # The decoder of the plain autoencoder depends on the bottleneck only.
    torch.manual_seed(0)
    x = torch.rand(2, 1, 16, 16, 8)
    feats = without.encode(x)
    zeroed = feats._replace(skips=tuple(torch.zeros_like(s) for s in feats.skips))
    assert torch.equal(without.decode_logits(feats), without.decode_logits(zeroed))
    assert not torch.equal(with_skips.decode_logits(with_skips.encode(x)), with_skips.decode_logits(
        with_skips.encode(x)._replace(skips=tuple(torch.zeros_like(s) for s in with_skips.encode(x).skips))))


def test_batch_stats_norm_uses_batch_statistics_in_eval_and_updates_running_stats():
    torch.manual_seed(0)
    norm = ContBatchNorm(4, spatial_dims=3).eval()
    x = torch.randn(3, 4, 4, 4, 2) * 5 + 2
    y = norm(x)
    # Normalised by the batch: per-channel mean 0, variance 1.
    assert torch.allclose(y.mean(dim=(0, 2, 3, 4)), torch.zeros(4), atol=1e-5)
    assert torch.allclose(y.var(dim=(0, 2, 3, 4), unbiased=False), torch.ones(4), atol=1e-3)
    assert torch.allclose(norm.running_mean, 0.1 * x.mean(dim=(0, 2, 3, 4)), atol=1e-5)
    assert int(norm.num_batches_tracked) == 0
    # Outputs depend on the batch composition, also in eval mode (the official batch-statistics norm).
    model = UNet3D(width=0.125).eval()
    a = torch.rand(2, 1, 16, 16, 8)
    b = torch.rand(2, 1, 16, 16, 8)
    alone = model(a)
    mixed = model(torch.cat([a[:1], b[:1]]))
    assert not torch.allclose(alone[:1], mixed[:1])
    # Standard batch norm in eval mode does not depend on the batch.
    std = UNet3D(width=0.125, norm="batch").eval()
    assert torch.allclose(std(a)[:1], std(torch.cat([a[:1], b[:1]]))[:1], atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 1, 15, 16, 8), (1, 1, 16, 16, 12), (1, 1, 16, 16), (1, 2, 16, 16, 8)])
def test_bad_input_shapes_raise_data_error_naming_shape(shape):
    model = UNet3D(width=0.125)
    with pytest.raises(DataError, match=r"shape \(" + ", ".join(str(s) for s in shape) + r"\)"):
        model(torch.rand(*shape))


def test_bad_constructor_arguments():
    with pytest.raises(ConfigError, match="norm"):
        UNet3D(norm="layer")
    with pytest.raises(ConfigError, match="out_activation"):
        UNet3D(out_activation="tanh")
    with pytest.raises(ConfigError, match="width"):
        UNet3D(width=0)


def test_ynet3d_outputs_and_shared_encoder():
    torch.manual_seed(0)
    model = YNet3D(width=0.125, num_classes=5)
    x = torch.rand(2, 1, 16, 16, 8)
    out = model(x)
    assert out.restoration.shape == x.shape and out.logits.shape == (2, 5)
    raw = model.forward_logits(x)
    assert torch.allclose(out.logits, raw.logits)  # logits, no softmax
    (out.restoration.mean() + out.logits.logsumexp(1).mean()).backward()
    assert model.clc_out.conv1.weight.grad is not None and model.down_tr512.ops[1].conv1.weight.grad is not None


@pytest.mark.parametrize("head", ["linear", "mlp", "genesis"])
def test_encoder_classifier_shares_encoder(head):
    torch.manual_seed(0)
    unet = UNet3D(width=0.125)
    clf = EncoderClassifier3D(unet, num_classes=3, head=head)
    assert clf.down_tr64 is unet.down_tr64
    x = torch.rand(2, 1, 16, 16, 8)
    logits = clf(x)
    assert logits.shape == (2, 3)
    logits.sum().backward()
    assert unet.down_tr64.ops[0].conv1.weight.grad is not None
    assert all(k.split(".")[0] in clf.encoder_state_dict_prefixes + ("head",) for k in clf.state_dict())
