"""Protocol tiers: versioned, hashed configs that fix everything an evaluation does.

A tier file is JSON under `evaluator/tiers/`. Its hash is the sha256 of the canonical JSON (sorted keys, no
whitespace) of the tier as loaded, every default filled in and the description left out: a result that
records the hash says exactly which protocol produced it, and writing a default out in the file, or
rewording the description, does not change it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

TIERS_DIR = Path(__file__).with_name("tiers")


@dataclass(frozen=True)
class ModelConfig:
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    decoder_embed_dim: int
    decoder_depth: int
    decoder_num_heads: int
    mlp_ratio: float = 4.0


@dataclass(frozen=True)
class PretrainConfig:
    samples_seen: int  # the fixed compute budget: every selection is pretrained on this many samples
    batch_size: int
    mask_ratio: float
    norm_pix_loss: bool
    base_lr: float  # peak lr = base_lr * batch_size / lr_reference_batch (MAE's linear scaling rule)
    lr_reference_batch: int
    weight_decay: float
    betas: tuple[float, float]
    warmup_fraction: float
    min_lr: float
    crop_scale: tuple[float, float]
    checkpoint_every: int

    @property
    def steps(self) -> int:
        return self.samples_seen // self.batch_size

    @property
    def peak_lr(self) -> float:
        return self.base_lr * self.batch_size / self.lr_reference_batch


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_fraction: float
    head_hidden: int
    eval_batch_size: int
    layer_decay: float = 1.0  # lr multiplier per encoder layer going down (MAE finetunes with 0.65-0.75)
    # Train the head only, on the frozen encoder's tokens (a probe): the score then reads what pretraining
    # put in the features, where a short end-to-end finetune re-learns much of it from the task itself.
    freeze_encoder: bool = False


@dataclass(frozen=True)
class Tier:
    name: str
    version: int
    description: str
    resolution: int
    model: ModelConfig
    pretrain: PretrainConfig
    finetune: FinetuneConfig
    precision: str  # "fp32" or "bf16" (autocast on CUDA)
    seed: int
    hash: str
    # torch.compile the transformer blocks on CUDA (evaluator.mae.compile_blocks); CPU runs stay eager.
    compile: bool = False
    # replay each pretraining step as one CUDA graph (evaluator.cuda_graph); ignored on CPU.
    cuda_graph: bool = False

    @classmethod
    def from_dict(cls, raw: dict) -> Tier:
        pre = dict(raw["pretrain"])
        pre["betas"] = tuple(pre["betas"])
        pre["crop_scale"] = tuple(pre["crop_scale"])
        tier = cls(
            name=raw["name"],
            version=int(raw["version"]),
            description=raw.get("description", ""),
            resolution=int(raw["resolution"]),
            model=ModelConfig(**raw["model"]),
            pretrain=PretrainConfig(**pre),
            finetune=FinetuneConfig(**raw["finetune"]),
            precision=raw.get("precision", "fp32"),
            seed=int(raw.get("seed", 0)),
            hash="",
            compile=raw.get("compile", False),
            cuda_graph=raw.get("cuda_graph", False),
        )
        tier = dataclasses.replace(tier, hash=tier_hash(tier.to_dict()))
        if tier.precision not in ("fp32", "bf16"):
            raise ValueError(f"tier {tier.name}: precision must be fp32 or bf16, not {tier.precision!r}")
        flags = (tier.compile, tier.cuda_graph, tier.finetune.freeze_encoder)
        if not all(isinstance(flag, bool) for flag in flags):
            raise ValueError(
                f"tier {tier.name}: compile, cuda_graph and freeze_encoder must be true or false"
            )
        if tier.pretrain.samples_seen % tier.pretrain.batch_size:
            raise ValueError(f"tier {tier.name}: samples_seen must be a multiple of batch_size")
        if tier.resolution % tier.model.patch_size:
            raise ValueError(f"tier {tier.name}: resolution must be a multiple of patch_size")
        return tier

    def to_dict(self) -> dict:
        raw = dataclasses.asdict(self)
        raw.pop("hash")
        return raw


def tier_hash(config: dict) -> str:
    """The protocol's identity: `config` is a tier's normalised dict (`Tier.to_dict()`); the description is
    not part of it."""
    identity = {k: v for k, v in config.items() if k not in ("hash", "description")}
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def available_tiers() -> list[str]:
    return sorted(p.stem for p in TIERS_DIR.glob("*.json"))


def load_tier(name_or_path: str | Path) -> Tier:
    """A tier by name (`synth-tiny`, `paper`, ...) or by the path of a tier JSON file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = TIERS_DIR / f"{name_or_path}.json"
        if not path.exists():
            raise ValueError(f"unknown tier {name_or_path!r}; available: {', '.join(available_tiers())}")
    return Tier.from_dict(json.loads(path.read_text()))
