"""``weights export --format state_dict``: a plain PyTorch state dict for other codebases."""

from __future__ import annotations

import pickletools

import torch

from semantic_genesis.cli import main
from semantic_genesis.models import YNet3D, create, save_weights
from semantic_genesis.models.importers import export_state_dict
from tests.models.test_importers import randomise


def _pickled_globals(path) -> set[str]:
    """The module.name of every GLOBAL the pickle inside a torch zip file refers to."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
        data = archive.read(name)
    found, strings = set(), []
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "GLOBAL":
            found.add(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL":
            found.add(".".join(strings[-2:]))
    return found


def test_state_dict_export_round_trips_into_a_fresh_network(tmp_path, capsys):
    model = randomise(create("unet2d", width=0.125, in_channels=2, out_channels=3)).eval()
    save_weights(model, tmp_path / "w.safetensors", metadata={"method": "semantic_genesis_2d"})
    assert main(["weights", "export", "--format", "state_dict", str(tmp_path / "w.safetensors"), str(tmp_path / "sd.pt")]) == 0
    out = capsys.readouterr().out
    assert "plain PyTorch state dict" in out and "create('unet2d', **{" in out

    plain = torch.load(tmp_path / "sd.pt", weights_only=True)  # no trust needed
    assert type(plain) is dict and all(isinstance(v, torch.Tensor) for v in plain.values())
    assert list(plain) == list(model.state_dict())
    pickled = _pickled_globals(tmp_path / "sd.pt")  # what unpickling would import: tensor rebuilding only
    assert "torch._utils._rebuild_tensor_v2" in pickled
    assert pickled <= {"torch._utils._rebuild_tensor_v2", "collections.OrderedDict", "torch.FloatStorage", "torch.LongStorage"}
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "sd.pt") == []

    fresh = create("unet2d", width=0.125, in_channels=2, out_channels=3).eval()
    assert not torch.equal(next(iter(fresh.state_dict().values())), next(iter(plain.values())))
    fresh.load_state_dict(plain, strict=True)
    x = torch.rand(2, 2, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


def test_state_dict_export_of_a_ynet_keeps_or_drops_the_head(tmp_path):
    model = randomise(YNet3D(width=0.125, num_classes=4))
    save_weights(model, tmp_path / "y.safetensors")
    path, architecture, arch_args = export_state_dict(tmp_path / "y.safetensors", tmp_path / "y.pt")
    assert path == tmp_path / "y.pt" and architecture == "ynet3d" and arch_args["num_classes"] == 4
    rebuilt = create(architecture, **arch_args)
    rebuilt.load_state_dict(torch.load(path, weights_only=True), strict=True)
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(), model.state_dict().values()))

    _, architecture, arch_args = export_state_dict(tmp_path / "y.safetensors", tmp_path / "u.pt", unet_only=True)
    assert architecture == "unet3d"
    unet = create(architecture, **arch_args)
    unet.load_state_dict(torch.load(tmp_path / "u.pt", weights_only=True), strict=True)
