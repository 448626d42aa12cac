"""``semantic-genesis info``: versions of every runtime dependency, devices and optional extras."""

from __future__ import annotations

import argparse

NAME = "info"
HELP = "print versions of the stack, available devices and optional extras"
ORDER = 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def runtime_dependencies() -> list[str]:
    """Distribution names of the package's runtime dependencies (from its installed metadata)."""
    import re
    from importlib import metadata

    try:
        requirements = metadata.requires("semantic-genesis") or []
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return []
    names = []
    for requirement in requirements:
        marker = requirement.split(";", 1)[1] if ";" in requirement else ""
        if "extra" in marker:
            continue  # optional extras are reported separately
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        if match and match.group(1) not in names:
            names.append(match.group(1))
    return names


def collect_info() -> dict:
    """Versions of Python and of every runtime dependency, devices, and importable extras."""
    import importlib
    import os
    import platform
    from importlib import metadata

    from semantic_genesis import __version__

    def importable(module_name: str) -> bool:
        try:
            importlib.import_module(module_name)
        except Exception:  # noqa: BLE001 - any import failure means "not available"
            return False
        return True

    info: dict = {
        "semantic_genesis": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {},
        "devices": {},
        "extras": {},
    }
    for name in runtime_dependencies():
        try:
            info["versions"][name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info["versions"][name] = None
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
        info["extras"][extra] = importable(module)
    return info


def run(args: argparse.Namespace) -> int:
    import json

    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"semantic-genesis {info['semantic_genesis']}  (Python {info['python']}, {info['platform']})")
    for name, version in info["versions"].items():
        print(f"  {name:<12} {version or 'NOT INSTALLED (required)'}")
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
