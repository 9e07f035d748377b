"""Batch augmentation for image classification, on the device, inside the training loop.

Augmentations that mix samples: mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019). Each option acts on a whole
micro-batch with tensor ops (no per-sample Python), after the batch is on the device:

- random crop with padding (the CIFAR recipe of He et al. 2016): pad by ``crop_padding`` pixels
  with the value a black (raw 0) pixel has after the data's normalisation, as torchvision's
  ``RandomCrop(padding=p)`` does before normalising, then cut the original size at a random
  offset per sample;
- horizontal flip of half the samples (off by default: it changes the meaning of digits and
  letters);
- mixup (Zhang et al. 2018): ``x = lam x + (1 - lam) x[perm]``, ``lam ~ Beta(a, a)``;
- CutMix (Yun et al. 2019): paste a box of ``x[perm]`` covering about ``1 - lam`` of the image,
  then set ``lam`` to the exact fraction left.

Mixing turns the targets into soft targets ``lam y + (1 - lam) y[perm]``: class probabilities
(B, C) for class ids, mixed 0/1 vectors for multilabel targets; the classification loss takes
either (:mod:`archlab.tasks.classification`). When both alphas are set, each batch uses one of
the two with equal odds (timm's ``switch_prob=0.5``).

All randomness comes from the augmenter's own CPU ``torch.Generator`` (seeded from the run's
seed); its state is saved in every checkpoint, so a run killed and resumed with augmentation on
still ends bitwise equal to one never interrupted. Only the per-batch draws (offsets, flips, a
permutation, ``lam``: O(B) numbers) are made on the host and copied over; the image ops run on
the batch's device.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field

from archlab.config import ArchConfig
from archlab.data.base import DataBundle, Split
from archlab.errors import ConfigError


class AugmentConfig(ArchConfig):
    """Augmentation of image-classification training batches (``train.augment``)."""

    crop_padding: int = Field(0, ge=0, le=64, description="Random crop after padding by this many pixels (0: off).")
    hflip: bool = Field(False, description="Flip half the images left-right (off: it changes digits' meaning).")
    mixup_alpha: float = Field(0.0, ge=0, description="mixup with lam ~ Beta(alpha, alpha) (0: off).")
    cutmix_alpha: float = Field(0.0, ge=0, description="CutMix with lam ~ Beta(alpha, alpha) (0: off).")
    mix_prob: float = Field(1.0, ge=0, le=1, description="Probability that a batch is mixed when an alpha is set.")

    @property
    def mixes(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    @property
    def active(self) -> bool:
        return self.crop_padding > 0 or self.hflip or self.mixes


def _beta(a: float, gen: torch.Generator) -> float:
    """One draw of Beta(a, a) from ``gen`` (a Dirichlet over two classes; the public
    ``torch.distributions.Beta`` takes no generator)."""
    return float(torch._sample_dirichlet(torch.tensor([a, a], dtype=torch.float64), generator=gen)[0])


class BatchAugmenter:
    """Applies an :class:`AugmentConfig` to training batches; built by :func:`build_augmenter`.

    Attributes:
        generator: the augmenter's RNG (CPU); saved and restored with the checkpoint.
    """

    def __init__(self, cfg: AugmentConfig, num_classes: int, fill: torch.Tensor, seed: int):
        self.cfg, self.num_classes = cfg, num_classes
        self.fill = fill  # (C,) the padding value per channel, in normalised units
        # Offset from the data-order seed so the two streams differ.
        self.generator = torch.Generator().manual_seed(seed + 0x5EED)

    def __call__(self, batch: Split) -> Split:
        """An augmented copy of ``batch`` (inputs (B, C, H, W); target (B,) ids or (B, L))."""
        x, y = batch.inputs[0], batch.target
        if self.cfg.crop_padding:
            x = self._crop(x, self.cfg.crop_padding)
        if self.cfg.hflip:
            flip = torch.rand(x.shape[0], generator=self.generator) < 0.5
            x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)
        if self.cfg.mixes and float(torch.rand((), generator=self.generator)) < self.cfg.mix_prob:
            x, y = self._mix(x, y)
        return Split(inputs=(x, *batch.inputs[1:]), target=y)

    def _crop(self, x: torch.Tensor, pad: int) -> torch.Tensor:
        b, c, h, w = x.shape
        padded = self.fill.to(x.device, x.dtype)[None, :, None, None].expand(b, c, h + 2 * pad, w + 2 * pad).clone()
        padded[:, :, pad : pad + h, pad : pad + w] = x
        off = torch.randint(0, 2 * pad + 1, (2, b), generator=self.generator).to(x.device)
        rows = off[0][:, None] + torch.arange(h, device=x.device)  # (B, H)
        cols = off[1][:, None] + torch.arange(w, device=x.device)  # (B, W)
        # Advanced indexing picks each sample's window: (B, H, W, C) -> (B, C, H, W)
        out = padded.permute(0, 2, 3, 1)[
            torch.arange(b, device=x.device)[:, None, None], rows[:, :, None], cols[:, None]
        ]
        return out.permute(0, 3, 1, 2).contiguous()

    def _mix(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, gen = self.cfg, self.generator
        b, _, h, w = x.shape
        use_cutmix = cfg.cutmix_alpha > 0 and (cfg.mixup_alpha == 0 or float(torch.rand((), generator=gen)) < 0.5)
        lam = _beta(cfg.cutmix_alpha if use_cutmix else cfg.mixup_alpha, gen)
        perm = torch.randperm(b, generator=gen).to(x.device)
        if use_cutmix:
            # A box of area (1 - lam) H W centred anywhere, clipped to the image (Yun et al. 2019, alg. A1).
            cut = math.sqrt(1.0 - lam)
            ch, cw = int(h * cut), int(w * cut)
            cy, cx = int(torch.randint(0, h, (), generator=gen)), int(torch.randint(0, w, (), generator=gen))
            y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
            x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
            x = x.clone()
            x[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
            lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
        else:
            x = lam * x + (1.0 - lam) * x[perm]
        soft = self._soft(y)  # (B, C) probabilities or (B, L) in [0, 1]
        return x, lam * soft + (1.0 - lam) * soft[perm]

    def _soft(self, y: torch.Tensor) -> torch.Tensor:
        if y.ndim == 1 and not y.is_floating_point():  # class ids -> one-hot (B, C)
            return torch.nn.functional.one_hot(y.long(), self.num_classes).float()
        return y.float()


def build_augmenter(cfg: AugmentConfig | None, data: DataBundle, task: Any, seed: int) -> BatchAugmenter | None:
    """The augmenter for a run, or None when no option is on.

    Raises:
        ConfigError: augmentation asked for where it does not apply: a task other than
            classification, or training inputs other than one float image batch (N, C, H, W).
    """
    if cfg is None or not cfg.active:
        return None
    if task.name != "classification" or data.modality != "image":
        raise ConfigError(
            f"train.augment applies to image classification; got task {task.name!r} on {data.modality!r} data"
        )
    x = data.train.inputs[0]
    if len(data.train.inputs) != 1 or x.ndim != 4 or not x.is_floating_point():
        got = ", ".join(f"{tuple(t.shape)} {t.dtype}" for t in data.train.inputs)
        raise ConfigError(f"train.augment expects one float image input (N, C, H, W); got {got}")
    y = data.train.target
    num_classes = int(data.info.get("num_classes") or (int(y.max()) + 1 if y.ndim == 1 else y.shape[1]))
    stats = data.info.get("normalization") or {}
    fill = torch.zeros(x.shape[1])
    if stats.get("over") == "channel" and len(stats.get("mean", ())) == x.shape[1]:
        fill = -torch.tensor(stats["mean"], dtype=torch.float32) / torch.tensor(stats["std"], dtype=torch.float32)
    return BatchAugmenter(cfg, num_classes, fill, seed)
