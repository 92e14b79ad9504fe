"""Makes timm importable on a CPU-only torch next to the registry's CUDA build of torchvision.

torchvision's import registers fake kernels for `torchvision::nms` and `torchvision::qnms`, which fails
("operator torchvision::nms does not exist") when its compiled CUDA library cannot load under a CPU torch.
Defining the two schemas first lets the import succeed; timm's ViT needs nothing else from torchvision.
torchvision's ops and image decoding stay unusable there, which is why DELBench decodes images with PIL.
On a CUDA build of torch both packages work as shipped and nothing is patched.
"""

from __future__ import annotations

import sys

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor",
)
_library = None  # keeps the registration alive for the life of the process


def needs_torchvision_shim() -> bool:
    import torch

    return torch.version.cuda is None and "torchvision" not in sys.modules


def import_timm():
    """Import and return timm, registering the torchvision schemas first where a CPU torch needs them."""
    global _library
    if _library is None and needs_torchvision_shim():
        import torch

        try:
            library = torch.library.Library("torchvision", "DEF")
            for schema in _SCHEMAS:
                library.define(schema)
            _library = library
        except RuntimeError:
            pass  # already defined (a real torchvision build loaded its ops): nothing to patch
    import timm

    return timm
