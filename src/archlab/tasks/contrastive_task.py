"""Self-supervised contrastive training of a Siamese encoder (InfoNCE over two augmented views).

Each training batch is augmented twice; the shared encoder embeds both views and InfoNCE
(:func:`archlab.tasks.contrastive.info_nce`, SimCLR's symmetric NT-Xent) asks view 1 of sample i
to pick view 2 of sample i among the batch. Labels are never used for training.

Augmentations (seed 001: "batch composition matters"; SimCLR: augmentation is the signal):
- images (B, C, H, W): random translation by up to ``shift`` pixels (zero padding), random
  erasing of one ``erase`` x ``erase`` patch, Gaussian noise of std ``noise``;
- vectors / signals: Gaussian noise of std ``noise`` and feature dropout with probability ``drop``.

Evaluation on held-out data (labels used only here):
- ``recall_at_1`` / ``recall_at_5``: for each sample, is a sample of its class among its k
  nearest neighbours (cosine) in the split - the retrieval recall@k of metric learning
  (Song et al. 2016, as reported on CUB / SOP);
- ``pair_recall_at_1``: view 1 retrieves its own view 2 (the InfoNCE objective itself).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlab.data.base import Split
from archlab.errors import ConfigError
from archlab.tasks.base import Task
from archlab.tasks.generative import data_shape_of, fit_shape


def augment(x: torch.Tensor, *, shift: int, erase: int, noise: float, drop: float,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """One random view of a batch (see module docs); x is (B, C, H, W) images or (B, ...) other."""
    b = x.shape[0]
    dev = x.device
    if x.ndim == 4:
        h, w = x.shape[-2:]
        if shift > 0:  # translate each image by (dy, dx) in [-shift, shift] with zero padding
            padded = F.pad(x, (shift, shift, shift, shift))
            dy = torch.randint(0, 2 * shift + 1, (b,), device=dev, generator=generator)
            dx = torch.randint(0, 2 * shift + 1, (b,), device=dev, generator=generator)
            rows = (dy[:, None] + torch.arange(h, device=dev)[None])  # (B, H)
            cols = (dx[:, None] + torch.arange(w, device=dev)[None])  # (B, W)
            idx_r = rows[:, None, :, None].expand(b, x.shape[1], h, padded.shape[-1])
            x = padded.gather(2, idx_r)  # (B, C, H, W + 2s)
            idx_c = cols[:, None, None, :].expand(b, x.shape[1], h, w)
            x = x.gather(3, idx_c)  # (B, C, H, W)
        if erase > 0:
            y0 = torch.randint(0, max(1, h - erase + 1), (b,), device=dev, generator=generator)
            x0 = torch.randint(0, max(1, w - erase + 1), (b,), device=dev, generator=generator)
            ry = torch.arange(h, device=dev)[None]
            rx = torch.arange(w, device=dev)[None]
            m = ((ry >= y0[:, None]) & (ry < y0[:, None] + erase))[:, :, None] & \
                ((rx >= x0[:, None]) & (rx < x0[:, None] + erase))[:, None, :]  # (B, H, W)
            x = x.masked_fill(m[:, None], 0.0)
    elif drop > 0:
        keep = torch.rand(x.shape, device=dev, generator=generator) >= drop
        x = x * keep
    if noise > 0:
        x = x + noise * torch.randn(x.shape, device=dev, generator=generator)
    return x


class ContrastiveTask(Task):
    """InfoNCE on two augmented views; retrieval recall@k on held-out data.

    Options: ``temperature`` (0.1), ``shift`` (1 pixel), ``erase`` (3-pixel patch), ``noise``
    (0.1, in the data's standardised units), ``drop`` (0.1, vectors only).
    """

    name = "contrastive"
    needs_target = False

    def __init__(self, temperature: float = 0.1, shift: int = 1, erase: int = 3, noise: float = 0.1,
                 drop: float = 0.1, **options: Any):
        super().__init__(**options)
        if temperature <= 0:
            raise ConfigError(f"temperature={temperature} must be > 0")
        if shift < 0 or erase < 0 or noise < 0 or not 0 <= drop < 1:
            raise ConfigError(f"augmentations need shift >= 0, erase >= 0, noise >= 0, 0 <= drop < 1; got "
                              f"shift={shift}, erase={erase}, noise={noise}, drop={drop}")
        self.temperature, self.shift, self.erase, self.noise, self.drop = temperature, shift, erase, noise, drop
        self._eval_gen: torch.Generator | None = None
        self._emb: list[torch.Tensor] = []
        self._lab: list[torch.Tensor] = []

    def options(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "shift": self.shift, "erase": self.erase, "noise": self.noise,
                "drop": self.drop}

    def views(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        kw = dict(shift=self.shift, erase=self.erase, noise=self.noise, drop=self.drop, generator=generator)
        return augment(x, **kw), augment(x, **kw)

    def forward(self, model: nn.Module, batch: Split):
        x = batch.inputs[0].float()
        gen = None if model.training else self._eval_gen
        v1, v2 = self.views(x, gen)
        shape = data_shape_of(model)
        z1 = model(fit_shape(v1, shape, type(model).__name__))
        z2 = model(fit_shape(v2, shape, type(model).__name__))
        if model.training:
            return z1, z2, None
        return z1, z2, model(fit_shape(x, shape, type(model).__name__))  # clean embedding for retrieval

    def batch_loss(self, output, batch: Split) -> torch.Tensor:
        from archlab.tasks.contrastive import info_nce

        z1, z2, _ = output
        return info_nce(z1.float(), z2.float(), temperature=self.temperature)

    def make_metrics(self, device: torch.device) -> dict[str, Any]:
        self._eval_gen = torch.Generator(device=device).manual_seed(1234)
        self._emb, self._lab = [], []
        return {}

    def update_metrics(self, metrics, output, batch: Split) -> None:
        self._emb.append(output[2].detach().float())
        if batch.target is not None:
            self._lab.append(batch.target)

    def eval_extras(self, output, batch: Split) -> dict[str, torch.Tensor]:
        z1, z2, _ = output
        sim = F.normalize(z1.float(), dim=-1) @ F.normalize(z2.float(), dim=-1).T
        hits = (sim.argmax(1) == torch.arange(z1.shape[0], device=z1.device)).float().sum()
        return {"pair_hits": hits, "n": torch.tensor(float(z1.shape[0]), device=z1.device)}

    def finish_extras(self, sums) -> dict[str, float]:
        out = {"pair_recall_at_1": float(sums["pair_hits"]) / max(1.0, float(sums["n"]))}
        if self._emb and self._lab and len(self._lab) == len(self._emb):
            emb, lab = torch.cat(self._emb), torch.cat(self._lab)
            for k in (1, 5):
                out[f"recall_at_{k}"] = class_recall_at_k(emb, lab, k)
        return out

    def predict(self, model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Embeddings (B, D)."""
        return model(fit_shape(inputs[0].float(), data_shape_of(model), type(model).__name__))


@torch.no_grad()
def class_recall_at_k(emb: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Fraction of samples with a same-class sample among their k nearest others (cosine)."""
    z = F.normalize(emb.float(), dim=-1)
    sim = z @ z.T
    sim.fill_diagonal_(float("-inf"))  # a sample is not its own neighbour
    k = min(k, z.shape[0] - 1)
    if k < 1:
        return float("nan")
    nn_idx = sim.topk(k, dim=1).indices  # (N, k)
    return float((labels[nn_idx] == labels[:, None]).any(dim=1).float().mean())
