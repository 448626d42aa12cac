"""``semantic-genesis info``: versions, devices and optional extras."""

from __future__ import annotations

import argparse

NAME = "info"
HELP = "print versions of the stack, available devices and optional extras"
ORDER = 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def collect_info() -> dict:
    """Versions of Python and the main dependencies, devices, and importable extras."""
    import importlib
    import os
    import platform

    from semantic_genesis import __version__

    def version_of(module_name: str) -> str | None:
        try:
            module = importlib.import_module(module_name)
        except Exception:  # noqa: BLE001 - any import failure means "not available"
            return None
        return str(getattr(module, "__version__", getattr(module, "Version", lambda: "unknown")))

    info: dict = {
        "semantic_genesis": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {},
        "devices": {},
        "extras": {},
    }
    for name, module in [
        ("torch", "torch"),
        ("monai", "monai"),
        ("SimpleITK", "SimpleITK"),
        ("nibabel", "nibabel"),
        ("pydicom", "pydicom"),
        ("numpy", "numpy"),
        ("scipy", "scipy"),
        ("safetensors", "safetensors"),
    ]:
        info["versions"][name] = version_of(module)
    if info["versions"]["SimpleITK"] == "unknown" or info["versions"]["SimpleITK"] is None:
        try:
            import SimpleITK as sitk

            info["versions"]["SimpleITK"] = sitk.Version_VersionString()
        except Exception:  # noqa: BLE001
            pass
    import torch

    info["devices"]["cpu_threads"] = torch.get_num_threads()
    info["devices"]["cpu_count"] = os.cpu_count()
    info["devices"]["cuda_available"] = torch.cuda.is_available()
    info["devices"]["cuda"] = [
        {
            "index": i,
            "name": torch.cuda.get_device_name(i),
            "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1),
        }
        for i in range(torch.cuda.device_count())
    ]
    for extra, module in [("faiss", "faiss"), ("tensorboard", "tensorboard"), ("hypothesis", "hypothesis")]:
        info["extras"][extra] = version_of(module) is not None
    return info


def run(args: argparse.Namespace) -> int:
    import json

    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"semantic-genesis {info['semantic_genesis']}  (Python {info['python']}, {info['platform']})")
    for name, version in info["versions"].items():
        print(f"  {name:<12} {version or 'not installed'}")
    dev = info["devices"]
    print(f"  cpu          {dev['cpu_count']} cores, torch uses {dev['cpu_threads']} threads")
    if dev["cuda"]:
        for gpu in dev["cuda"]:
            print(f"  cuda:{gpu['index']}       {gpu['name']} ({gpu['memory_gib']} GiB)")
    else:
        print("  cuda         not available")
    extras = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in info["extras"].items())
    print(f"  extras       {extras}")
    return 0
