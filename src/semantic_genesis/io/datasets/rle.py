"""The SIIM-ACR Pneumothorax competition's run-length encoding of binary masks.

The competition (``train-rle.csv``, sample code ``mask_functions.py``) encodes a ``(H, W)`` mask as
follows:

* pixels are visited in **column-major** order (down the first column, then the second, ...), i.e. the
  flat index of pixel ``(row, col)`` is ``col * H + row`` (the sample code transposes the image);
* the string is a sequence of ``start length`` pairs separated by spaces, where each ``start`` is
  **relative**: the number of background pixels between the end of the previous run (or the first
  pixel, for the first run) and the start of this run;
* an image without pneumothorax is written as ``-1``.

The sample encoder of the competition drops a run that touches the very last pixel; this module does
not (it encodes every run), so :func:`rle_decode` of :func:`rle_encode` is always exact.
"""

from __future__ import annotations

import numpy as np

from semantic_genesis.errors import DataError

#: The string the competition uses for an image without a mask.
EMPTY_RLE = "-1"


def rle_encode(mask: np.ndarray) -> str:
    """Encode a binary mask with the SIIM-ACR relative, column-major run-length encoding.

    Args:
        mask: ``(H, W)`` array; non-zero pixels are foreground.

    Returns:
        ``"start length start length ..."`` with relative starts, or ``"-1"`` for an empty mask.

    Raises:
        DataError: if ``mask`` is not two-dimensional.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise DataError(f"rle_encode expects a 2D (H, W) mask, got shape {mask.shape}")
    flat = (mask.T.reshape(-1) != 0).astype(np.int8)
    if not flat.any():
        return EMPTY_RLE
    edges = np.diff(np.concatenate([[0], flat, [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    lengths = ends - starts
    previous_ends = np.concatenate([[0], ends[:-1]])
    relative = starts - previous_ends
    pairs = np.stack([relative, lengths], axis=1).reshape(-1)
    return " ".join(str(int(v)) for v in pairs)


def rle_decode(rle: str, height: int, width: int, *, where: str = "RLE") -> np.ndarray:
    """Decode a SIIM-ACR run-length string into a ``(height, width)`` boolean mask.

    Args:
        rle: the ``EncodedPixels`` string (``"-1"`` or empty means no foreground).
        height: image rows ``H``.
        width: image columns ``W``.
        where: how to name the string in error messages (e.g. ``"train-rle.csv row 12"``).

    Returns:
        ``(height, width)`` bool array.

    Raises:
        DataError: if the string is not pairs of integers, has a negative start or a non-positive
            length, or a run overruns the ``height * width`` pixels of the image.
    """
    text = rle.strip()
    mask = np.zeros(height * width, dtype=bool)
    if text in ("", EMPTY_RLE):
        return mask.reshape(width, height).T
    try:
        values = np.array([int(tok) for tok in text.split()], dtype=np.int64)
    except ValueError as exc:
        raise DataError(f"{where}: run-length string is not a list of integers ({exc})") from None
    if values.size % 2:
        raise DataError(f"{where}: run-length string has an odd number of values ({values.size}); "
                        "expected 'start length' pairs")
    starts, lengths = values[0::2], values[1::2]
    if (starts < 0).any() or (lengths <= 0).any():
        raise DataError(f"{where}: run-length string has a negative start or a non-positive length")
    absolute = np.cumsum(starts + np.concatenate([[0], lengths[:-1]]))
    ends = absolute + lengths
    total = height * width
    if ends.size and int(ends[-1]) > total:
        raise DataError(
            f"{where}: run-length encoding overruns the image: a run ends at pixel {int(ends[-1])} "
            f"but a {height}x{width} image has {total} pixels"
        )
    # Mark run boundaries and integrate, which fills every run in one vectorised pass.
    delta = np.zeros(total + 1, dtype=np.int32)
    np.add.at(delta, absolute, 1)
    np.add.at(delta, ends, -1)
    mask = np.cumsum(delta[:-1]) > 0
    return mask.reshape(width, height).T
