"""``semantic-genesis weights import|export|inspect`` end to end (tiny width)."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from semantic_genesis.cli import main
from semantic_genesis.models import UNet3D, load_weights
from tests.models.test_importers import randomise, save_official


def test_weights_cli_import_export_inspect(tmp_path, capsys):
    unet = randomise(UNet3D(width=0.125))
    save_official(unet, tmp_path / "mg.pt")
    out = tmp_path / "mg.safetensors"
    assert main(["weights", "import", "--format", "models_genesis", str(tmp_path / "mg.pt"), str(out)]) == 0
    assert "106 tensors" in capsys.readouterr().out
    state_dict, meta = load_weights(out)
    assert meta["method"] == "models_genesis" and meta["source"]["file"] == "mg.pt"
    assert all(torch.equal(state_dict[k], v) for k, v in unet.state_dict().items())

    assert main(["weights", "export", "--format", "models_genesis", str(out), str(tmp_path / "back.pt")]) == 0
    back = torch.load(tmp_path / "back.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(back["module." + k], v) for k, v in unet.state_dict().items())
    capsys.readouterr()

    assert main(["weights", "inspect", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_parameters"] == sum(p.numel() for p in unet.parameters())
    assert info["metadata"]["architecture"] == "unet3d"
    assert main(["weights", "inspect", str(tmp_path / "back.pt")]) == 0
    text = capsys.readouterr().out
    assert "unet3d (inferred from the keys)" in text and "key prefix    module." in text


def test_weights_cli_untrusted_and_bad_file(tmp_path, capsys):
    save_official(UNet3D(width=0.125), tmp_path / "ns.pt", args=argparse.Namespace(lr=1))
    out = tmp_path / "o.safetensors"
    assert main(["weights", "import", "--format", "models_genesis", str(tmp_path / "ns.pt"), str(out)]) == 2
    err = capsys.readouterr().err
    assert "argparse.Namespace" in err and "--trust" in err and not out.exists()
    with pytest.warns(UserWarning, match="weights_only=False"):
        assert main(["weights", "import", "--format", "models_genesis", "--trust", str(tmp_path / "ns.pt"), str(out)]) == 0
    assert out.exists()
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    assert main(["weights", "inspect", str(tmp_path / "junk.pt")]) == 2
    assert "junk.pt: not a readable PyTorch checkpoint" in capsys.readouterr().err
