"""The VAE objective: the evidence lower bound (Kingma & Welling, ICLR 2014).

For one sample x with encoder q(z|x) = N(mu, diag(sigma^2)) and prior p(z) = N(0, I)::

    -ELBO(x) = E_q[-log p(x|z)]  +  beta * KL(q(z|x) || p(z))
               reconstruction         kl

    KL = -1/2 * sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)        (appendix B of the paper)

The reconstruction term is estimated with the one z the forward pass drew (reparameterised, so
it is differentiable). Both terms are summed over a sample's features / latent dimensions and
averaged over the batch, so they are on the same scale and ``beta`` means what it does in
beta-VAE (Higgins et al., ICLR 2017): beta > 1 trades reconstruction for a more factorised code.

Usage::

    x_hat, mu, logvar = model(x)
    parts = elbo_loss(x_hat, x, mu, logvar, beta=1.0, recon="bce")
    parts["total"].backward()

:class:`VAETask` trains on the same objective in ``archlab.fit`` and logs both parts.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from archlab.data.base import Split
from archlab.errors import ConfigError, ShapeError
from archlab.tasks.generative_base import (
    GenerativeOptions,
    GenerativeTask,
    batch_labels,
    cycled_labels,
    num_classes_of,
)
from archlab.tasks.reconstruction import check_pair


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Analytic KL(N(mu, diag(exp(logvar))) || N(0, I)) per sample.

    Args:
        mu: (B, latent_dim) posterior means.
        logvar: (B, latent_dim) posterior log-variances.

    Returns:
        (B,) KL divergence of each sample, in nats.
    """
    if not isinstance(mu, torch.Tensor) or not isinstance(logvar, torch.Tensor):
        raise ShapeError(f"gaussian_kl expects tensors mu and logvar; got {type(mu).__name__}, {type(logvar).__name__}")
    if mu.shape != logvar.shape or mu.dim() != 2:
        raise ShapeError(
            f"gaussian_kl expects mu and logvar (B, latent_dim) of the same shape; got mu "
            f"{tuple(mu.shape)}, logvar {tuple(logvar.shape)}"
        )
    return -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)


def elbo_loss(
    x_hat: torch.Tensor,
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    beta: float = 1.0,
    recon: Literal["bce", "mse"] = "bce",
) -> dict[str, torch.Tensor]:
    """Negative ELBO and its parts, each a scalar tensor averaged over the batch.

    Args:
        x_hat: (B, ...) decoder output; Bernoulli means in [0, 1] for ``recon="bce"``.
        x: (B, ...) inputs, same shape; in [0, 1] for ``recon="bce"``.
        mu, logvar: (B, latent_dim) from ``model.encode`` / ``model(x)``.
        beta: weight of the KL term (1 = the ELBO; beta-VAE uses > 1); >= 0.
        recon: ``"bce"`` = -log Bernoulli likelihood; ``"mse"`` = sum of squared errors, the
            -log Gaussian likelihood with variance 1/2 up to a constant.

    Returns:
        ``{"reconstruction": ..., "kl": ..., "total": reconstruction + beta * kl}``.
    """
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or beta < 0:
        raise ConfigError(f"elbo_loss: beta must be a number >= 0; got beta={beta!r}")
    check_pair(x_hat, x, recon, "elbo_loss")
    kl = gaussian_kl(mu, logvar)
    if kl.shape[0] != x.shape[0]:
        raise ShapeError(f"elbo_loss expects mu (B, latent_dim) with B = x's batch {x.shape[0]}; got {tuple(mu.shape)}")
    if recon == "bce":
        per_feature = F.binary_cross_entropy(x_hat, x, reduction="none")
    else:
        per_feature = (x_hat - x).pow(2)
    reconstruction = per_feature.flatten(1).sum(dim=1).mean()  # sum over features, mean over batch
    kl = kl.mean()
    return {"reconstruction": reconstruction, "kl": kl, "total": reconstruction + beta * kl}


# ------------------------------------------------------------------------------------ the task
class VAEOptions(GenerativeOptions):
    """Options of :class:`VAETask`."""

    beta: float = Field(1.0, ge=0, description="KL weight; 1 is the ELBO, > 1 a beta-VAE")
    recon: Literal["bce", "mse"] = Field("bce", description="bce for sigmoid decoders on [0, 1] data, else mse")


class VAETask(GenerativeTask):
    """VAE training on the negative ELBO (:func:`elbo_loss`); reconstruction and KL are logged
    separately. A class-conditional VAE (``num_classes`` set) is given the batch's labels."""

    name = "vae"
    Options = VAEOptions
    image_range = "unit"

    def forward(self, model: nn.Module, batch: Split):
        x = self.prepare(model, batch.inputs[0])
        x_hat, mu, logvar = model(x, *batch_labels(model, batch))  # a conditional VAE also gets y
        return x_hat, x, mu, logvar

    def parts(self, output) -> dict[str, torch.Tensor]:
        x_hat, x, mu, logvar = output
        return elbo_loss(
            x_hat.float(), x.float(), mu.float(), logvar.float(), beta=self.opts.beta, recon=self.opts.recon
        )

    def batch_loss(self, output, batch: Split) -> torch.Tensor:
        return self.parts(output)["total"]

    def training_step(self, model, batch, optimizers, ctx):
        with ctx.autocast():
            parts = self.parts(self.forward(model, batch))
        ctx.backward(parts["total"])
        if ctx.sync:
            ctx.step(optimizers[0])
        return {
            "loss": parts["total"].detach(),
            "reconstruction": parts["reconstruction"].detach(),
            "kl": parts["kl"].detach(),
        }

    def eval_extras(self, output, batch: Split) -> dict[str, torch.Tensor]:
        p = self.parts(output)
        n = float(output[1].shape[0])
        return {
            "reconstruction": p["reconstruction"] * n,
            "kl": p["kl"] * n,
            "n": torch.tensor(n, device=p["kl"].device),
        }

    def finish_extras(self, sums) -> dict[str, float]:
        n = max(1.0, float(sums["n"]))
        return {"reconstruction": float(sums["reconstruction"]) / n, "kl": float(sums["kl"]) / n}

    @torch.no_grad()
    def sample(
        self,
        model: nn.Module,
        n: int,
        generator: torch.Generator | None = None,
        *,
        labels: torch.Tensor | None = None,
        **_: Any,
    ) -> torch.Tensor:
        """``n`` prior samples in the data layout for viewing; a conditional VAE draws class
        ``labels`` (n,) (default: cycled 0..K-1)."""
        model.eval()
        if num_classes_of(model):
            y = labels if labels is not None else cycled_labels(model, n)
            return self.to_display(model.sample(n, generator=generator, y=y))
        return self.to_display(model.sample(n, generator=generator))
