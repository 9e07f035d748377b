"""Likelihood training and reporting for normalizing flows (see :mod:`archlab.models.flow`).

A flow gives the exact log-density log p(x) = log N(f(x); 0, I) + log|det df/dx| (Dinh et al.
2017, eq. 3), so training is plain maximum likelihood: minimise the mean negative log-likelihood.

Discrete data (8-bit pixels, sklearn's 0..16 digits) has no density; a continuous flow fitted to
it can put unbounded density on the discrete points. Uniform dequantization (Theis, van den Oord
& Bethge 2016, "A note on the evaluation of generative models"; used by RealNVP) fixes it: with
n_bins levels, feed u = (x + U[0, 1)) / n_bins in [0, 1)^D. Then for each discrete x

    log P(x) >= E_U[log p(u)] - D log(n_bins),

because the bin of x has volume (1 / n_bins)^D in u-space. Bits per dimension report that bound:

    bpd = -(log p(u) - D log n_bins) / (D ln 2) = (-log p(u) / D + log n_bins) / ln 2.

(Uniform noise on [0, 1] gives bpd <= log2(n_bins); 8 bits for 256 levels means "learnt nothing".)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from archlab.errors import ConfigError, ShapeError


def nll_loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood -1/B sum_i log p(x_i), in nats (the training loss).

    Args:
        model: a flow with ``log_prob(x) -> (B,)``.
        x: a batch the flow accepts (dequantized if the data is discrete).
    """
    return -model.log_prob(x).mean()


def bits_per_dim(log_prob: torch.Tensor, num_dims: int, n_bins: int = 256) -> torch.Tensor:
    """Bits per dimension of dequantized discrete data: (-log p(u) / D + log n_bins) / ln 2.

    Args:
        log_prob: (B,) or scalar log-density, in nats, of the dequantized data u in [0, 1)^D
            (as produced by :func:`dequantize`). If the flow saw a further transform of u
            (e.g. 2u - 1 or a logit), add that transform's log|det| to log_prob first.
        num_dims: D, the dimensions of one example (C*H*W for images).
        n_bins: discrete levels per dimension (256 for 8-bit pixels, 17 for sklearn digits).
            ``n_bins=1`` gives plain bits/dim of a continuous density, without the term.

    Returns:
        Same shape as ``log_prob``.
    """
    if num_dims < 1:
        raise ConfigError(f"bits_per_dim expects num_dims >= 1; got num_dims={num_dims}")
    if n_bins < 1:
        raise ConfigError(f"bits_per_dim expects n_bins >= 1; got n_bins={n_bins}")
    return (-log_prob / num_dims + math.log(n_bins)) / math.log(2.0)


def dequantize(x: torch.Tensor, n_bins: int = 256, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform dequantization: integer levels x in {0..n_bins-1} -> (x + U[0, 1)) / n_bins in [0, 1).

    Args:
        x: integer-valued tensor (any dtype) of discrete levels.
        n_bins: number of levels.
        generator: source of the uniform noise.
    """
    xf = x.float()
    if xf.numel() and (float(xf.min()) < 0 or float(xf.max()) > n_bins - 1):
        raise ShapeError(
            f"dequantize expects levels in [0, {n_bins - 1}] (n_bins={n_bins}); "
            f"got values in [{float(xf.min())}, {float(xf.max())}]"
        )
    noise = torch.rand(xf.shape, generator=generator, device=xf.device)
    return (xf + noise) / n_bins
