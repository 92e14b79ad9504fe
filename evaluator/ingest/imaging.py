"""Decoding one source file into the arrays a store holds.

Every image, pool or task, is centre-cropped to a square (the largest one that fits) and resized to each
requested resolution with PIL's bilinear filter, which widens its kernel when shrinking and so averages like
an area filter. A mask gets the same crop, is binarised (grey level > 127 after conversion to L; a mask that
is already 0/1 is kept as is) and is resized with nearest-neighbour, so it stays binary.

JPEGs are decoded with libjpeg's DCT scaling (`Image.draft`) at the largest power-of-two reduction that still
leaves the crop at least as large as the biggest target; the crop box is scaled with it, so masks, which are
decoded at full size, stay aligned.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image

Box = tuple[float, float, float, float]


def square_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The centred square crop of a width × height image, as (left, top, right, bottom)."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_image(data: bytes, resolutions: list[int]) -> tuple[tuple[int, int], dict[int, np.ndarray]]:
    """The image's full (width, height) and its uint8 [res, res, 3] square resizes."""
    with Image.open(io.BytesIO(data)) as im:
        full_size = im.size
        box: Box = square_box(*full_size)
        drafted = im.draft("RGB", (max(resolutions), max(resolutions)))
        if drafted is not None:
            scale = full_size[0] / drafted[1][2]
            box = tuple(c / scale for c in box)
        rgb = im.convert("RGB")  # decodes the whole file: a truncated one raises here
    out = {}
    for res in resolutions:
        out[res] = np.asarray(rgb.resize((res, res), Image.Resampling.BILINEAR, box=box), dtype=np.uint8)
    return full_size, out


def decode_mask(data: bytes, image_size: tuple[int, int], resolutions: list[int]) -> dict[int, np.ndarray]:
    """A binary uint8 [res, res] mask in {0, 1} for each resolution, cropped like its image."""
    with Image.open(io.BytesIO(data)) as im:
        if im.size != image_size:
            raise ValueError(f"mask is {im.size[0]}x{im.size[1]}, its image {image_size[0]}x{image_size[1]}")
        grey = np.asarray(im.convert("L"))
    binary = (grey > 127) if grey.max(initial=0) > 1 else (grey > 0)
    mask = Image.fromarray(binary.astype(np.uint8))
    box = square_box(*image_size)
    return {
        res: np.asarray(mask.resize((res, res), Image.Resampling.NEAREST, box=box), dtype=np.uint8)
        for res in resolutions
    }
