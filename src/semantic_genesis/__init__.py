"""semantic-genesis: anatomy-aware self-supervised pretraining for medical imaging.

Implements Models Genesis (Zhou et al., MICCAI 2019 / MedIA 2021) and Semantic Genesis
(Haghighi et al., MICCAI 2020), their baselines and the transfer-learning evaluation protocol.

The top-level package is deliberately light: importing it does not import torch or MONAI, so that
``semantic-genesis --help`` is instant. Import the sub-packages you need, e.g.
``from semantic_genesis import transforms``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
