"""Image descriptors for the two tests MedDEL makes besides clustering: is a frame an image at all, and is it
a copy of another?

The MAE embedding (`evaluator.baselines.embed`) says which frames show similar scenes, which is what k-means
needs. It cannot answer the other two questions on its own, measured on the synthetic pool with planted
copies and invalid frames (docs/baselines.md): mean-pooled patch tokens of a small MAE are so anisotropic
that neighbouring frames of one video sit at cosine 0.99999 like a copy does, and black or noise frames
resemble one another so closely that they form clusters of their own, where every member lies next to its
centroid. Both tests therefore read a thumbnail of the pixels, in two normalisations:

- `structure`: the thumbnail minus its own mean, to unit norm. Images with content are smooth and share
  their cluster's layout; a black screen (sensor noise only) or a noise frame is a random vector here, far
  from every centroid, even from the centroid of a cluster made of such frames (|mean of n random unit
  vectors| ~ 1/sqrt(n)). MedDEL's outlier test (its distance to the cluster centre above eps) reads this.
- `appearance`: the thumbnail in grey levels plus a constant component, to unit norm. The constant keeps
  norms within a factor of two whatever the brightness, so 1 - cos tracks the absolute pixel difference:
  a copy off by one grey level is far closer than any two frames taken apart in time (sensor noise alone
  moves a pixel by more), whether the frames are bright or dark. The pairwise duplicate step reads this.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

THUMBNAIL = 32  # side of the stored thumbnail; `structure` averages it down to STRUCTURE_SIDE
STRUCTURE_SIDE = 16  # 16 x 16 x 3 = 768 values: the dimension of ViT-B's embedding, which MedDEL reads
DESCRIPTOR_VERSION = 1  # part of the feature cache key


def thumbnails(images: np.ndarray, *, batch: int = 1024, progress=None) -> np.ndarray:
    """float16 [N, THUMBNAIL, THUMBNAIL, 3] grey levels: each uint8 image box-averaged to the thumbnail."""
    out = np.empty((len(images), THUMBNAIL, THUMBNAIL, 3), dtype=np.float16)
    for a in range(0, len(images), batch):
        for i, image in enumerate(images[a : a + batch]):
            small = Image.fromarray(np.ascontiguousarray(image)).resize((THUMBNAIL, THUMBNAIL), Image.BOX)
            out[a + i] = np.asarray(small, dtype=np.float32)
        if progress:
            progress(min(a + batch, len(images)), len(images))
    return out


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def structure(thumbs: np.ndarray) -> np.ndarray:
    """float32 [N, 768], unit norm: the 16 x 16 thumbnail minus its own mean (brightness removed)."""
    n, side = len(thumbs), thumbs.shape[1]
    f = side // STRUCTURE_SIDE
    x = np.asarray(thumbs, dtype=np.float32).reshape(n, STRUCTURE_SIDE, f, STRUCTURE_SIDE, f, 3).mean((2, 4))
    x = x.reshape(n, -1)
    return _unit_rows(x - x.mean(1, keepdims=True))


def appearance(thumbs: np.ndarray) -> np.ndarray:
    """float32 [N, 32*32*3 + 1], unit norm: grey levels in [0, 1] and a constant sqrt(D), so that 1 - cos
    is (nearly) proportional to the mean squared pixel difference, whatever the brightness."""
    x = np.asarray(thumbs, dtype=np.float32).reshape(len(thumbs), -1) / 255.0
    constant = np.full((len(x), 1), np.sqrt(x.shape[1]), dtype=np.float32)
    return _unit_rows(np.concatenate([x, constant], axis=1))
