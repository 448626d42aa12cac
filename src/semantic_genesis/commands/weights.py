"""``semantic-genesis weights``: import, export and inspect network weights.

* ``weights import --format {models_genesis,semantic_genesis} IN.pt OUT.safetensors [--trust]``:
  convert an official checkpoint (``Genesis_Chest_CT.pt``, ``semantic_genesis_chest_ct.pt``) into a
  safetensors file with metadata, reporting the keys used and skipped.
* ``weights import --format {torchvision_resnet18,smp_resnet18_unet} IN.pth OUT.safetensors
  [--in-channels {1,3}] [--rgb-to-grey {sum,mean}] [--fold-imagenet-normalisation]``: ImageNet ResNet-18 weights (torchvision
  ``resnet18-*.pth``: the encoder of the ``resunet2d``; a segmentation_models_pytorch
  ``Unet("resnet18")``: the whole network). For grey input the first conv's RGB filters are summed
  (default) or averaged; every key used and skipped is listed.
* ``weights import --format monai_swin IN.pt OUT.safetensors``: a 2D MONAI Swin encoder (the SwinUNETR
  ``swinViT.*`` keys, or the self-supervised ``model_swinvit.pt`` layout under ``module.``) into a
  ``swin2d``, a whole 2D SwinUNETR into a ``swin_unetr2d``; the architecture is read from the tensors and
  the pre-training heads are listed as skipped.
* ``weights export --format models_genesis IN.safetensors OUT.pt [--unet-only]``: write our weights in
  the official layout (``{'state_dict': {'module.' + key: tensor}}``) for the official code.
* ``weights export --format state_dict IN.safetensors OUT.pt [--unet-only]``: a plain PyTorch state dict
  (``{key: tensor}``, tensors only: ``torch.load(OUT, weights_only=True)`` reads it) for other codebases;
  the architecture to build is printed.
* ``weights inspect PATH [--json] [--trust]``: metadata, parameter count and a key summary of a
  ``.safetensors`` or ``.pt`` file. Tensors holding NaN or inf (parameters or buffers, e.g. a batch-norm
  ``running_var`` of a diverged run) are listed in a warning and the exit status is 1; every loader
  refuses such a file.

When OUT of ``import`` or ``export`` is an existing folder, the file is written inside it, named after
IN (``OUT/IN-stem.safetensors``, ``OUT/IN-stem.pt``), as ``cp`` does.
"""

from __future__ import annotations

import argparse

NAME = "weights"
HELP = "import official checkpoints, export to the official layout or a plain state dict, inspect weights files"
ORDER = 70
DESCRIPTION = __doc__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="weights_command", metavar="ACTION", required=True)

    imp = sub.add_parser("import", help="convert an official .pt checkpoint to .safetensors with metadata")
    imp.add_argument("--format", required=True,
                     choices=["models_genesis", "semantic_genesis", "torchvision_resnet18", "smp_resnet18_unet",
                              "monai_swin"],
                     help="models_genesis: strict; semantic_genesis: drop projection_head/prototypes, "
                          "strip the classficationNet. prefix, report skipped keys; torchvision_resnet18: "
                          "ImageNet ResNet-18 (resnet18-*.pth) into the resunet2d encoder, fc.* skipped; "
                          "smp_resnet18_unet: a segmentation_models_pytorch Unet('resnet18') into the resunet2d; "
                          "monai_swin: a 2D MONAI Swin encoder (SwinUNETR swinViT.* / self-supervised "
                          "model_swinvit.pt key layout) into swin2d, or a whole 2D SwinUNETR into swin_unetr2d")
    imp.add_argument("input", metavar="IN", help="official checkpoint (.pt/.pth)")
    imp.add_argument("output", metavar="OUT", help="destination .safetensors (or a folder: OUT/IN-stem.safetensors)")
    imp.add_argument("--trust", action="store_true",
                     help="allow unpickling Python objects from IN (weights_only=False); only for files you trust")
    imp.add_argument("--input-size", type=int, nargs="+", default=None, metavar="N",
                     help="input size recorded in the metadata (default 64 64 32; 224 224 for ResNet-18 U-Nets)")
    imp.add_argument("--in-channels", type=int, choices=[1, 3], default=1,
                     help="ResNet-18 layouts: input channels of the resunet2d (default 1, grey radiographs)")
    imp.add_argument("--rgb-to-grey", choices=["sum", "mean"], default="sum",
                     help="ResNet-18 layouts with --in-channels 1: sum (default; a grey image gives the "
                          "activations of its RGB copy) or average the first conv's RGB filters")
    imp.add_argument("--fold-imagenet-normalisation", action="store_true",
                     help="ResNet-18 layouts: fold ImageNet's per-channel mean/std into conv1 and bn1, so that "
                          "[0, 1] inputs reach the stem as normalised ones did")

    exp = sub.add_parser("export", help="write .safetensors weights as an official Models Genesis .pt or a plain state dict")
    exp.add_argument("--format", required=True, choices=["models_genesis", "state_dict"],
                     help="models_genesis: {'state_dict': {'module.' + key: tensor}} for the official code; "
                          "state_dict: a plain {key: tensor} PyTorch state dict (torch.load(weights_only=True))")
    exp.add_argument("input", metavar="IN", help="our .safetensors weights (models_genesis: of a 3D U-Net, with or without the Semantic Genesis head)")
    exp.add_argument("output", metavar="OUT", help="destination .pt (or a folder: OUT/IN-stem.pt)")
    exp.add_argument("--unet-only", action="store_true", help="drop the Semantic Genesis head (clc_out.*)")

    ins = sub.add_parser("inspect", help="print metadata, parameter count and key summary")
    ins.add_argument("path", metavar="PATH", help=".safetensors or .pt file")
    ins.add_argument("--json", action="store_true", help="print one JSON object")
    ins.add_argument("--trust", action="store_true", help="allow unpickling Python objects (.pt only)")


def output_path(output: str, input: str, suffix: str) -> str:
    """``output``, or ``output/<input stem><suffix>`` when ``output`` is an existing folder."""
    from pathlib import Path

    out = Path(output)
    return str(out / (Path(input).name.split(".")[0] + suffix)) if out.is_dir() else output


def _run_import(args: argparse.Namespace) -> int:
    import textwrap

    from semantic_genesis.commands._common import check_output_file
    from semantic_genesis.models.importers import import_checkpoint

    extra = {"input_size": list(args.input_size)} if args.input_size else None
    args.output = output_path(args.output, args.input, ".safetensors")
    check_output_file(args.output)
    result = import_checkpoint(args.input, args.output, fmt=args.format, trust=args.trust, metadata=extra,
                               in_channels=args.in_channels, rgb_to_grey=args.rgb_to_grey,
                               fold_normalisation=args.fold_imagenet_normalisation)
    n_params = sum(v.numel() for k, v in result.state_dict.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    print(f"imported {args.input} ({result.format}) -> {args.output}")
    print(f"  architecture {result.architecture} {result.arch_args}")
    print(f"  {len(result.state_dict)} tensors, {n_params:,} parameters")
    if result.used:
        wrapped = textwrap.fill(", ".join(result.used), width=100, initial_indent="    ", subsequent_indent="    ")
        print(f"  used {len(result.used)} key(s):\n{wrapped}")
    if result.first_conv:
        print(f"  first conv: {result.first_conv}")
    if result.skipped:
        shown = ", ".join(result.skipped) if result.used else (
            ", ".join(result.skipped[:5]) + (f", ... (+{len(result.skipped) - 5})" if len(result.skipped) > 5 else ""))
        print(f"  skipped {len(result.skipped)} key(s): {shown}")
    if result.missing:
        shown = ", ".join(result.missing[:5]) + (f", ... (+{len(result.missing) - 5})" if len(result.missing) > 5 else "")
        print(f"  missing {len(result.missing)} key(s) (not in the file, not saved): {shown}")
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from semantic_genesis.commands._common import check_output_file
    from semantic_genesis.models.importers import export_models_genesis, export_state_dict

    args.output = output_path(args.output, args.input, ".pt")
    check_output_file(args.output)

    if args.format == "state_dict":
        _, architecture, arch_args = export_state_dict(args.input, args.output, unet_only=args.unet_only)
        print(f"exported {args.input} -> {args.output} (plain PyTorch state dict, tensors only)")
        print(f"  load with: net = semantic_genesis.models.create({architecture!r}, **{arch_args!r}); "
              f"net.load_state_dict(torch.load({args.output!r}, weights_only=True))")
        return 0
    export_models_genesis(args.input, args.output, unet_only=args.unet_only)
    print(f"exported {args.input} -> {args.output} (official Models Genesis layout, 'module.' prefixed keys)")
    return 0


def _run_inspect(args: argparse.Namespace) -> int:
    import json

    from semantic_genesis.models.loading import describe_weights
    from semantic_genesis.provenance import is_record

    info = describe_weights(args.path, trust=args.trust)
    status = 1 if info["non_finite"] else 0
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return status
    print(f"{info['path']}  ({info['kind']}, {info['size_bytes']:,} bytes)")
    meta = info.get("metadata") or {}
    if "architecture" in meta:
        inferred = " (inferred from the keys)" if meta.get("inferred") else ""
        print(f"  architecture  {meta['architecture']}{inferred}  {json.dumps(meta.get('arch_args', {}))}")
    for key, value in meta.items():
        if key in ("architecture", "arch_args", "inferred"):
            continue
        if key == "patients" and is_record(value):  # hashed ids: counts per training stage and split
            text = "; ".join(f"{s.get('method')}: " + ", ".join(f"{n} {len(h)}" for n, h in s["splits"].items())
                             for s in value["sources"])
            print(f"  {key:<13} {text} (hashed ids)")
            continue
        text = json.dumps(value, default=str)
        print(f"  {key:<13} {text if len(text) <= 100 else text[:97] + '...'}")
    if "entries" in info:
        print(f"  entries       {', '.join(f'{k} ({t})' for k, t in info['entries'].items())}")
        print(f"  key prefix    {info['prefix'] or '(none)'}; looks like {info['detected_format']}")
    print(f"  tensors       {info['num_tensors']}  parameters {info['num_parameters']:,}  dtypes {', '.join(info['dtypes'])}")
    for group, counts in info["groups"].items():
        print(f"    {group:<22} {counts['tensors']:>4} tensors {counts['parameters']:>12,} parameters")
    if status:
        from semantic_genesis.models.state import describe_nonfinite

        bad = info["non_finite"]
        print(f"WARNING: {len(bad)} tensor(s) hold non-finite values: {describe_nonfinite(bad)}; every loader "
              "refuses these weights (a diverged run?)")
    return status


def run(args: argparse.Namespace) -> int:
    action = {"import": _run_import, "export": _run_export, "inspect": _run_inspect}[args.weights_command]
    return action(args)
