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

:class:`FlowTask` trains a flow by maximum likelihood in ``archlab.fit`` and reports NLL, bits/dim
and the NLL of a Gaussian fitted to the training data (the density a flow must beat).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field
from torch import nn

from archlab.data.base import DataBundle, Split
from archlab.errors import ConfigError, ShapeError
from archlab.tasks.generative_base import GenerativeOptions, GenerativeTask


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


# ------------------------------------------------------------------------------------ the task
class FlowOptions(GenerativeOptions):
    """Options of :class:`FlowTask`."""

    dequantize: int | None = Field(
        None,
        ge=2,
        description="discrete levels per pixel to dequantize (17 for "
        "sklearn's digits, 256 for 8-bit images); None for "
        "continuous data",
    )


class FlowTask(GenerativeTask):
    """Maximum likelihood for normalizing flows: NLL in nats, bits/dim, and a Gaussian baseline.

    Every evaluation also reports ``gaussian_nll``: the NLL of a full-covariance Gaussian fitted
    (maximum likelihood) to the training split in the same space - the density a flow must beat.
    For images, ``dequantize=n_bins`` adds uniform noise to the integer pixel levels (Theis et al.
    2016) and ``bits_per_dim`` includes the log(n_bins) term (17 levels for sklearn's digits).
    """

    name = "flow"
    Options = FlowOptions
    image_range = "unit"

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.n_bins: int | None = self.opts.dequantize
        self.gauss: tuple[torch.Tensor, torch.Tensor] | None = None
        self.dims = 1
        self._eval_gen: torch.Generator | None = None

    def setup(self, data: DataBundle, cfg, device: torch.device) -> None:
        super().setup(data, cfg, device)
        if self.n_bins is not None and self.range != "unit":
            raise ConfigError(f"dequantize={self.n_bins} needs images in [0, 1]; data_range is {self.range!r}")
        x = self.to_model_range(data.train.inputs[0].float())
        if self.n_bins is not None:  # fit the baseline to the same dequantized data the flow sees
            gen = torch.Generator().manual_seed(0)
            x = ((x * (self.n_bins - 1)).round() + torch.rand(x.shape, generator=gen)) / self.n_bins
        x = x.flatten(1).double()
        self.dims = int(x.shape[1])
        mean = x.mean(0)
        cov = torch.cov(x.T).reshape(self.dims, self.dims) + 1e-6 * torch.eye(self.dims, dtype=x.dtype)
        self.gauss = (mean.to(device), cov.to(device))

    def _x(self, model: nn.Module, batch: Split, generator: torch.Generator | None = None) -> torch.Tensor:
        x = self.prepare(model, batch.inputs[0])
        if self.n_bins is not None:
            levels = (x * (self.n_bins - 1)).round()
            x = (levels + torch.rand(x.shape, device=x.device, generator=generator)) / self.n_bins
        return x

    def forward(self, model: nn.Module, batch: Split):
        gen = self._eval_gen if not model.training else None
        x = self._x(model, batch, gen)
        return model.log_prob(x), x

    def make_metrics(self, device: torch.device) -> dict[str, Any]:
        self._eval_gen = torch.Generator(device=device).manual_seed(1234)  # same noise every evaluation
        return {}

    def batch_loss(self, output, batch: Split) -> torch.Tensor:
        return -output[0].float().mean()

    def eval_extras(self, output, batch: Split) -> dict[str, torch.Tensor]:
        log_prob, x = output
        out = {"nll_sum": -log_prob.float().sum(), "n": torch.tensor(float(log_prob.numel()), device=log_prob.device)}
        if self.gauss is not None:
            mean, cov = self.gauss
            g = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
            out["gauss_sum"] = -g.log_prob(x.flatten(1).double()).sum().float()
        return out

    def finish_extras(self, sums) -> dict[str, float]:
        n = max(1.0, float(sums["n"]))
        nll = float(sums["nll_sum"]) / n
        bins = self.n_bins or 1
        out = {"nll": nll, "bits_per_dim": (nll / self.dims + math.log(bins)) / math.log(2.0)}
        if "gauss_sum" in sums:
            out["gaussian_nll"] = float(sums["gauss_sum"]) / n
        return out

    @torch.no_grad()
    def sample(self, model: nn.Module, n: int, generator: torch.Generator | None = None, **_: Any) -> torch.Tensor:
        """``n`` samples x = f^-1(z), z ~ N(0, I), in the data layout (images in [0, 1])."""
        model.eval()
        return self.to_display(model.sample(n, generator=generator))
