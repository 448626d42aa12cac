"""One entry point for the chest X-ray classification readers: :func:`read_labelled_images`.

Each reader turns its public layout into :class:`~semantic_genesis.io.datasets.labelled.LabelledImages`
(see that module for the fields); this module names them, so a config can say
``layout: chexpert, root: ..., split: train, options: {uncertain: lsr_ones}``:

==================  ==========================  ===============  =========================================
layout              reader                      task             label space
==================  ==========================  ===============  =========================================
``chestxray14``     ``read_chestxray14``        multi-label      the 14 NIH findings
``chexpert``        ``read_chexpert``           multi-label      14 observations (uncertainty policies)
``mimic_cxr``       ``read_mimic_cxr``          multi-label      the same 14, alphabetical (from header)
``vindr_cxr``       ``read_vindr_cxr``          multi-label      28 labels (or Ark's 6), radiologists merged
``rsna_pneumonia``  ``read_rsna_pneumonia``     binary / 3-class ``Pneumonia`` or Normal / Not Normal / Opacity
``shenzhen``        ``read_shenzhen``           binary           ``Tuberculosis``
==================  ==========================  ===============  =========================================
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

from semantic_genesis.errors import DataError

#: layout name -> (module, reader function, default split).
CXR_READERS: dict[str, tuple[str, str, str]] = {
    "chestxray14": ("chestxray14", "read_chestxray14", "train_val"),
    "chexpert": ("chexpert", "read_chexpert", "train"),
    "mimic_cxr": ("mimic_cxr", "read_mimic_cxr", "train"),
    "vindr_cxr": ("vindr_cxr", "read_vindr_cxr", "train"),
    "rsna_pneumonia": ("rsna_pneumonia", "read_rsna_pneumonia", "train"),
    "shenzhen": ("shenzhen", "read_shenzhen", "all"),
}


def read_labelled_images(layout: str, root: str | Path, split: str | None = None, **options: Any):
    """Read ``split`` of the ``layout`` dataset at ``root`` with the reader's ``options``.

    Returns:
        :class:`~semantic_genesis.io.datasets.labelled.LabelledImages`.

    Raises:
        DataError: an unknown layout or option (the message lists the valid ones), or what the reader
            raises.
    """
    if layout not in CXR_READERS:
        raise DataError(f"unknown chest X-ray layout {layout!r}; expected one of {', '.join(CXR_READERS)}")
    module_name, function_name, default_split = CXR_READERS[layout]
    reader = getattr(importlib.import_module(f"semantic_genesis.io.datasets.{module_name}"), function_name)
    accepted = [p for p in inspect.signature(reader).parameters if p not in ("root", "split")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DataError(f"unknown option {unknown[0]!r} for the {layout} reader; valid options: {', '.join(accepted)}")
    return reader(root, split=default_split if split is None else split, **options)
