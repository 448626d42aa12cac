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

import inspect
from pathlib import Path
from typing import Any, Callable

from semantic_genesis.errors import DataError
from semantic_genesis.utils.registry import Registry

#: layout name -> its reader (imported on first use); each reader's own ``split`` default applies.
CXR_READERS: Registry[Callable[..., Any]] = Registry("chest X-ray layout", key="layout", sort=False)
for _layout in ("chestxray14", "chexpert", "mimic_cxr", "vindr_cxr", "rsna_pneumonia", "shenzhen"):
    CXR_READERS.add_lazy(_layout, f"semantic_genesis.io.datasets.{_layout}:read_{_layout}")


def read_labelled_images(layout: str, root: str | Path, split: str | None = None, **options: Any):
    """Read ``split`` of the ``layout`` dataset at ``root`` (``None``: the reader's default split) with
    the reader's ``options``.

    Returns:
        :class:`~semantic_genesis.io.datasets.labelled.LabelledImages`.

    Raises:
        DataError: an unknown layout or option (the message lists the valid ones), or what the reader
            raises.
    """
    if layout not in CXR_READERS:
        raise DataError(f"unknown chest X-ray layout {layout!r}; expected one of {', '.join(CXR_READERS.available())}")
    reader = CXR_READERS.get(layout)
    accepted = [p for p in inspect.signature(reader).parameters if p not in ("root", "split")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DataError(f"unknown option {unknown[0]!r} for the {layout} reader; valid options: {', '.join(accepted)}")
    return reader(root, **({} if split is None else {"split": split}), **options)
