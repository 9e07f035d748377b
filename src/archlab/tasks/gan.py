"""Adversarial training: discriminator and generator losses, and one alternating step.

The networks (``archlab.models.gan``) only map z -> x and x -> logit; the game is here.

Losses on discriminator logits l (no sigmoid applied):

- ``nonsaturating`` (Goodfellow et al. 2014, sec. 3): D minimises
  ``-log s(l_real) - log(1 - s(l_fake)) = softplus(-l_real) + softplus(l_fake)``;
  G minimises ``-log s(l_fake) = softplus(-l_fake)`` instead of ``log(1 - s(l_fake))``, which
  would saturate (vanishing gradients) while D easily rejects G's samples. This is the seeds'
  ``BCELoss`` with real labels for G, written on logits.
- ``hinge`` (Lim & Ye 2017; Miyato et al. 2018): D minimises
  ``mean(relu(1 - l_real)) + mean(relu(1 + l_fake))``; G minimises ``-mean(l_fake)``.

``gan_step`` does what seed 003's training loop does, per batch: one D update on real and
detached fake samples, then one G update through the just-updated D.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import ConfigError, ShapeError

LossKind = Literal["nonsaturating", "hinge"]
_KINDS = ("nonsaturating", "hinge")


def _check_kind(kind: str, where: str) -> None:
    if kind not in _KINDS:
        raise ConfigError(f"{where}: kind must be one of {', '.join(_KINDS)}; got kind={kind!r}")


def _check_logits(t: torch.Tensor, name: str, where: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        raise ShapeError(f"{where} expects {name} a float tensor (B,) of logits; got {type(t).__name__}")
    if t.dim() == 2 and t.shape[1] == 1:
        t = t[:, 0]  # (B, 1) -> (B,)
    if t.dim() != 1:
        raise ShapeError(f"{where} expects {name} (B,) or (B, 1) logits; got {tuple(t.shape)}")
    return t


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: LossKind = "nonsaturating") -> torch.Tensor:
    """Discriminator loss (scalar) from D's logits on real and on fake samples.

    Args:
        real_logits: (B,) or (B, 1) logits of real samples.
        fake_logits: (B',) or (B', 1) logits of generated samples.
        kind: ``"nonsaturating"`` (binary cross-entropy) or ``"hinge"``.
    """
    _check_kind(kind, "d_loss")
    real = _check_logits(real_logits, "real_logits", "d_loss")
    fake = _check_logits(fake_logits, "fake_logits", "d_loss")
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def g_loss(fake_logits: torch.Tensor, kind: LossKind = "nonsaturating") -> torch.Tensor:
    """Generator loss (scalar) from D's logits on generated samples.

    Args:
        fake_logits: (B,) or (B, 1) logits of generated samples (not detached).
        kind: ``"nonsaturating"`` (``-log D(G(z))``) or ``"hinge"`` (``-D(G(z))``).
    """
    _check_kind(kind, "g_loss")
    fake = _check_logits(fake_logits, "fake_logits", "g_loss")
    if kind == "hinge":
        return -fake.mean()
    return F.softplus(-fake).mean()


def gan_step(
    model: nn.Module,
    real: torch.Tensor,
    opt_d: torch.optim.Optimizer,
    opt_g: torch.optim.Optimizer,
    kind: LossKind = "nonsaturating",
    generator: torch.Generator | None = None,
    z: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
) -> dict[str, float]:
    """One alternating update: a discriminator step, then a generator step.

    Args:
        model: a GAN from :mod:`archlab.models.gan` (``generate``, ``discriminate``,
            ``generator`` and ``discriminator`` submodules).
        real: a batch of real samples in the generator's output range ([-1, 1] for Tanh).
        opt_d: optimizer over ``model.discriminator.parameters()``.
        opt_g: optimizer over ``model.generator.parameters()``.
        kind: loss pair, ``"nonsaturating"`` or ``"hinge"``.
        generator: RNG for the noise z (reproducible steps).
        z: (B, latent_dim) noise to use instead of drawing it (tests, fixed-noise studies).
        y: (B,) class ids of ``real`` for a class-conditional GAN (``num_classes`` set); the fake
            batch is generated with the same labels, and D scores both with them.

    Returns:
        ``{"d_loss", "g_loss", "d_real", "d_fake"}`` floats: D's loss before its update, G's loss
        before its update (through the updated D), and D's mean logit on real / fake samples.
    """
    _check_kind(kind, "gan_step")
    if z is None:
        z = torch.randn(real.shape[0], model.config.latent_dim, generator=generator,
                        device=generator.device if generator is not None else real.device,
                        dtype=next(model.parameters()).dtype).to(real.device)
    cond = () if y is None else (y,)  # an unconditional model gets no labels
    fake = model.generate(z, *cond)

    # D step: fake is detached so this update does not reach the generator.
    opt_d.zero_grad(set_to_none=True)
    real_logits = model.discriminate(real, *cond)
    fake_logits = model.discriminate(fake.detach(), *cond)
    loss_d = d_loss(real_logits, fake_logits, kind)
    loss_d.backward()
    opt_d.step()

    # G step through the updated D; D's parameters are frozen so no gradient is wasted on them.
    opt_g.zero_grad(set_to_none=True)
    d_params = [p for p in model.discriminator.parameters() if p.requires_grad]
    for p in d_params:
        p.requires_grad_(False)
    try:
        loss_g = g_loss(model.discriminate(fake, *cond), kind)
        loss_g.backward()
    finally:
        for p in d_params:
            p.requires_grad_(True)
    opt_g.step()

    return {
        "d_loss": loss_d.item(),
        "g_loss": loss_g.item(),
        "d_real": real_logits.detach().mean().item(),
        "d_fake": fake_logits.detach().mean().item(),
    }
