"""MiniRocket: fixed convolution kernels, PPV pooling and a linear head fitted in closed form.

When to use: series classification with few labelled series (tens to a few thousand) or little
compute. No convolution weight is learned: 84 fixed kernels at several dilations, with biases
drawn from the training data, turn each series into about 10,000 "proportion of positive values"
features, and a ridge classifier on them matches deep networks on the UCR archive in seconds.
Paper: Dempster, Schmidt & Webb 2021, "MiniRocket: A Very Fast (Almost) Deterministic Transform
for Time Series Classification" (KDD).

The transform (all of it frozen buffers, saved in the safetensors file with the head):

- kernels: length 9, weights -1 except three positions of weight 2 (the C(9, 3) = 84 choices);
- dilations: ``floor(2**e)`` for ``e`` evenly spaced in ``[0, log2((L - 1) / 8)]``, each kernel
  getting features in proportion to how often its dilation comes up (:func:`dilation_plan`);
- padding: the convolution is "same"-padded; for half of the (kernel, dilation) pairs, alternating,
  PPV is taken over the positions the padding does not reach;
- biases: for each (kernel, dilation), the convolution of one random training series, and the
  biases its quantiles ``frac(k * phi)`` (the golden ratio's low-discrepancy sequence);
- features: ``PPV = mean_t [conv(x)_t > bias]``.

Multivariate series (C > 1): each (kernel, dilation) sums the convolutions of a random subset
of the channels (MiniRocket's multivariate variant).

The biases need data: :meth:`MiniRocket.fit_to_data` draws them from the training series, then
(``head_fit="ridge"``) fits the head in closed form by ridge regression on standardised features,
with the penalty chosen by leave-one-out cross-validation over ``alphas`` (Rifkin & Lippert's
closed form, as scikit-learn's ``RidgeClassifierCV``). ``archlab.fit`` calls it before training;
the training steps after it then only adjust the head. ``fitted`` (a saved buffer) records that
it ran. Without it the biases are 0 and the head is untrained.

Layout: inputs ``(B, C, L)``, channels first, like ``resnet1d`` and the UCR datasets; ``L`` must be
the configured ``seq_len`` (the dilations depend on it).

Presets: ``minirocket`` (about 10,000 features, GunPoint-sized (B, 1, 150), 2 classes).
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from archlab.config import ArchConfig, Extent, Size
from archlab.errors import ShapeError
from archlab.layers.checks import check_tensor
from archlab.layers.params import ParamCount
from archlab.registry import register

log = logging.getLogger(__name__)

KERNEL_LENGTH = 9
NUM_KERNELS = 84  # C(9, 3)
MAX_DILATIONS_PER_KERNEL = 32
PHI = (math.sqrt(5) + 1) / 2


class MiniRocketConfig(ArchConfig):
    """Config of a MiniRocket transform + linear head (Dempster et al. 2021)."""

    in_channels: Size = Field(1, ge=1, description="Channels of the series (1: univariate).")
    num_classes: Size = Field(2, ge=1, description="Classes (or regression outputs).")
    seq_len: Extent = Field(150, ge=KERNEL_LENGTH, description="Series length L (the dilations depend on it).")
    num_features: int = Field(
        10_000, ge=NUM_KERNELS, le=200_000, description="Features wanted (rounded down to a multiple of 84)."
    )
    head_fit: Literal["ridge", "trained"] = Field(
        "ridge", description="ridge: head fitted in closed form by fit_to_data; trained: left to the optimizer."
    )
    alphas: list[float] = Field(
        default_factory=lambda: np.logspace(-3, 3, 10).tolist(),
        min_length=1,
        max_length=100,
        description="Ridge penalties tried by leave-one-out cross-validation.",
    )
    ridge_max_samples: int = Field(
        20_000,
        ge=1,
        le=10_000_000,
        description="Above this many training series the ridge solve is skipped (head trained).",
    )
    seed: int = Field(
        0, ge=0, le=2**32 - 1, description="Seed of the training series drawn for the biases and channel subsets."
    )


def kernel_weights() -> torch.Tensor:
    """(84, 9): -1 everywhere, 2 at the three positions of each of the C(9, 3) choices."""
    w = -torch.ones(NUM_KERNELS, KERNEL_LENGTH)
    for k, idx in enumerate(itertools.combinations(range(KERNEL_LENGTH), 3)):
        w[k, list(idx)] = 2.0
    return w


def dilation_plan(seq_len: int, num_features: int) -> tuple[list[int], list[int]]:
    """Dilations and features per kernel at each (the reference ``_fit_dilations``)."""
    per_kernel = num_features // NUM_KERNELS
    true_max = min(per_kernel, MAX_DILATIONS_PER_KERNEL)
    multiplier = per_kernel / true_max
    max_exponent = math.log2(max(seq_len - 1, 1) / (KERNEL_LENGTH - 1))
    raw = np.logspace(0, max(max_exponent, 0.0), true_max, base=2).astype(np.int32)
    dilations, counts = np.unique(raw, return_counts=True)
    counts = (counts * multiplier).astype(np.int32)
    remainder, i = per_kernel - int(counts.sum()), 0
    while remainder > 0:  # hand out what rounding left, one per dilation in turn
        counts[i] += 1
        remainder -= 1
        i = (i + 1) % len(counts)
    return [int(d) for d in dilations], [int(n) for n in counts]


def quantiles(n: int) -> torch.Tensor:
    """(n,): ``frac(k * phi)`` for k = 1..n, the low-discrepancy quantiles of the biases."""
    return torch.tensor([(k * PHI) % 1 for k in range(1, n + 1)], dtype=torch.float32)


class MiniRocket(ParamCount, nn.Module):
    """Frozen MiniRocket transform ``(B, C, L) -> (B, F)`` and a Linear head ``F -> classes``."""

    def __init__(self, config: MiniRocketConfig):
        super().__init__()
        self.config = config
        c = config
        self.dilations, self.counts = dilation_plan(c.seq_len, c.num_features)
        gen = torch.Generator().manual_seed(c.seed)
        base = kernel_weights()  # (84, 9)
        L = c.seq_len
        for i, (d, n) in enumerate(zip(self.dilations, self.counts)):
            # (84, C, 9): each kernel reads a random subset of the channels (all of one channel)
            channels = _channel_subsets(NUM_KERNELS, c.in_channels, gen).to(base.device)  # (84, C)
            self.register_buffer(f"weight{i}", base[:, None, :] * channels[:, :, None])
            self.register_buffer(f"bias{i}", torch.zeros(NUM_KERNELS, n))
            # PPV positions: all for even (kernel + dilation index), the unpadded ones for odd
            pad = (KERNEL_LENGTH - 1) // 2 * d
            inside = torch.zeros(L)
            inside[pad : max(L - pad, pad + 1)] = 1.0
            odd = (torch.arange(NUM_KERNELS) + i) % 2 == 1
            mask = torch.where(odd[:, None], inside[None, :], torch.ones(1, L))  # (84, L)
            self.register_buffer(f"mask{i}", mask / mask.sum(dim=1, keepdim=True))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.head = nn.Linear(self.num_features, c.num_classes)

    @property
    def num_features(self) -> int:
        """PPV features of the transform: 84 x (features per kernel)."""
        return NUM_KERNELS * sum(self.counts)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        return (torch.randn(batch_size, self.config.in_channels, self.config.seq_len),)

    def _conv(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """(B, C, L) -> (B, 84, L): the 84 kernels at dilation ``dilations[i]``, "same" padding."""
        d = self.dilations[i]
        return nn.functional.conv1d(x, getattr(self, f"weight{i}"), padding=(KERNEL_LENGTH - 1) // 2 * d, dilation=d)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, L) -> (B, num_features) PPV features (no gradient flows: nothing here is learned)."""
        c = self.config
        x = check_tensor(self, x, "B C L", C=c.in_channels, L=c.seq_len)
        feats = []
        for i in range(len(self.dilations)):
            conv = self._conv(x, i)  # (B, 84, L)
            bias = getattr(self, f"bias{i}")  # (84, n)
            positive = (conv[:, :, None, :] > bias[None, :, :, None]).to(x.dtype)  # (B, 84, n, L)
            # mean over the kernel's PPV positions, as a matmul with the (84, L) weights of mask{i}
            ppv = positive @ getattr(self, f"mask{i}")[None, :, :, None]  # (B, 84, n, 1)
            feats.append(ppv.flatten(1))  # (B, 84 * n)
        return torch.cat(feats, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify series.

        Args:
            x: (B, in_channels, seq_len) float.

        Returns:
            (B, num_classes) logits (ridge scores after ``fit_to_data``).
        """
        return self.head(self.transform(x))

    @torch.no_grad()
    def fit_to_data(self, inputs: tuple[torch.Tensor, ...], target: torch.Tensor | None) -> dict[str, Any]:
        """Draw the biases from the training series; with ``head_fit="ridge"``, fit the head.

        Args:
            inputs: the training split's inputs; ``inputs[0]`` is (N, C, L).
            target: (N,) class ids, or (N,) / (N, K) float regression targets.

        Returns:
            What was done: series used, features, and the ridge penalty chosen (or why not).
        """
        x = check_tensor(
            self, inputs[0], "N C L", name="train inputs", C=self.config.in_channels, L=self.config.seq_len
        )
        x = x.float().to(self.head.weight.device)  # fitted where the model lives
        self._fit_biases(x)
        self.fitted.fill_(True)
        record: dict[str, Any] = {"series": int(x.shape[0]), "features": self.num_features, "head": "trained"}
        if self.config.head_fit != "ridge" or target is None:
            return record
        if x.shape[0] > self.config.ridge_max_samples:
            record["head_note"] = f"{x.shape[0]} series > ridge_max_samples={self.config.ridge_max_samples}"
            return record
        feats = torch.cat([self.transform(chunk) for chunk in x.split(64)])  # (N, F)
        y = _ridge_targets(target.to(x.device), self.config.num_classes)
        weight, bias, alpha = ridge_cv(feats.double(), y.double(), self.config.alphas)
        self.head.weight.copy_(weight.T.float())
        self.head.bias.copy_(bias.float())
        record.update(head="ridge", alpha=alpha)
        log.info("minirocket: biases from %d series, ridge head with alpha=%.3g", x.shape[0], alpha)
        return record

    def _fit_biases(self, x: torch.Tensor) -> None:
        """Biases of each (dilation, kernel): quantiles of one random training series' convolution."""
        gen = torch.Generator().manual_seed(self.config.seed + 1)
        for i, n in enumerate(self.counts):
            start = sum(self.counts[:i])
            q = quantiles(sum(self.counts))[start : start + n].to(x.device)  # (n,)
            pick = torch.randint(0, x.shape[0], (NUM_KERNELS,), generator=gen).to(x.device)
            conv = self._conv(x[pick], i)  # (84, 84, L): series k through all kernels
            k = torch.arange(NUM_KERNELS, device=x.device)
            own = conv[k, k]  # (84, L): kernel k on series k
            getattr(self, f"bias{i}").copy_(torch.quantile(own, q, dim=1).T)  # (n, 84) -> (84, n)


def _channel_subsets(n: int, channels: int, gen: torch.Generator) -> torch.Tensor:
    """(n, C) 0/1 rows: random channel subsets of size 2**U(0, log2(min(C, 9) + 1)) - 1."""
    # drawn on the CPU even while a model is built on the meta device (autosize, summaries)
    if channels == 1:
        return torch.ones(n, 1, device="cpu")
    top = math.log2(min(channels, KERNEL_LENGTH) + 1)
    sizes = (2 ** (torch.rand(n, generator=gen, device="cpu") * top)).floor().clamp(min=1).long() - 1
    sizes = sizes.clamp(min=1)
    rows = torch.zeros(n, channels, device="cpu")
    for k in range(n):
        rows[k, torch.randperm(channels, generator=gen, device="cpu")[: int(sizes[k])]] = 1.0
    return rows


def _ridge_targets(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class ids -> (N, K) of +1 / -1 (as RidgeClassifier); float targets -> (N, K)."""
    if target.is_floating_point():
        return target.reshape(target.shape[0], -1)
    if target.ndim != 1:
        raise ShapeError(f"minirocket.fit_to_data expects class ids (N,); got {tuple(target.shape)}")
    return nn.functional.one_hot(target.long(), num_classes).double() * 2 - 1


def ridge_cv(x: torch.Tensor, y: torch.Tensor, alphas: list[float]) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Ridge regression of ``y`` on standardised ``x``, penalty by leave-one-out error.

    With the centred, scaled features ``Z = U S V^T`` (thin SVD), the hat matrix of penalty ``a``
    is ``U diag(s^2 / (s^2 + a)) U^T`` (+ 1/N for the intercept), and the leave-one-out residual
    is ``(y_i - yhat_i) / (1 - H_ii)`` - every penalty is scored from one SVD.

    Args:
        x: (N, F) features; y: (N, K) targets.

    Returns:
        ``weight`` (F, K) and ``bias`` (K,) on the raw features, and the chosen penalty.
    """
    n = x.shape[0]
    mean, scale = x.mean(dim=0), x.std(dim=0)
    scale = torch.where(scale > 1e-12, scale, torch.ones_like(scale))  # constant features stay 0
    z = (x - mean) / scale
    y_mean = y.mean(dim=0)
    yc = y - y_mean
    u, s, vt = torch.linalg.svd(z, full_matrices=False)  # (N, k), (k,), (k, F)
    uty = u.T @ yc  # (k, K)
    best, best_err = alphas[0], math.inf
    for a in alphas:
        shrink = s**2 / (s**2 + a)  # (k,)
        fitted = u @ (shrink[:, None] * uty)  # (N, K)
        h = (u**2 * shrink).sum(dim=1) + 1.0 / n  # (N,) diagonal of the hat matrix
        loo = (yc - fitted) / (1 - h).clamp(min=1e-12)[:, None]
        err = float(loo.pow(2).mean())
        if err < best_err:
            best, best_err = a, err
    coef = vt.T @ ((s / (s**2 + best))[:, None] * uty)  # (F, K) on standardised features
    weight = coef / scale[:, None]
    bias = y_mean - mean @ weight
    return weight, bias, float(best)


register(
    "minirocket",
    family="rocket",
    model=MiniRocket,
    config=MiniRocketConfig,
    defaults=dict(in_channels=1, num_classes=2, seq_len=150, num_features=10_000),
    modalities=("time_series",),
    tasks=("classification", "regression"),
    description="MiniRocket (Dempster et al. 2021): 84 fixed kernels x dilations, ~10k PPV features, "
    "ridge head fitted in closed form",
    when_to_use="Series classification with few labelled series or little compute: fast, strong on UCR",
    knobs={"num_features": "width"},
)
