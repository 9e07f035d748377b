"""Adversarial training: discriminator and generator losses, and one alternating step.

The networks (``archlab.models.gan``) only map z -> x and x -> logit; the game is here.

Losses on discriminator logits l (no sigmoid applied):

- ``nonsaturating`` (Goodfellow et al. 2014, sec. 3): D minimises
  ``-log s(l_real) - log(1 - s(l_fake)) = softplus(-l_real) + softplus(l_fake)``;
  G minimises ``-log s(l_fake) = softplus(-l_fake)`` instead of ``log(1 - s(l_fake))``, which
  would saturate (vanishing gradients) while D easily rejects G's samples. This is the usual
  ``BCELoss`` with real labels for G (Goodfellow et al. 2014), written on logits.
- ``hinge`` (Lim & Ye 2017; Miyato et al. 2018): D minimises
  ``mean(relu(1 - l_real)) + mean(relu(1 + l_fake))``; G minimises ``-mean(l_fake)``.

``gan_step`` does what the standard GAN training loop does, per batch: one D update on real and
detached fake samples, then one G update through the just-updated D. It is the one GAN step:
:class:`GANTask` (the task ``archlab.fit`` trains GANs with) calls it with the engine's
:class:`~archlab.train.step.StepContext`, so precision, accumulation and clipping apply to both
players. ``d_loss``, ``g_loss`` and their sum (``loss``, for the curve) are logged. A GAN's
"validation loss" does not measure sample quality, so run GANs with ``restore_best: false``
(the examples do); the task draws a grid of the same fixed noise every few evaluations instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from archlab.data.base import DataBundle, Split
from archlab.errors import ConfigError, ShapeError
from archlab.tasks.generative_base import (
    GenerativeOptions,
    GenerativeTask,
    batch_labels,
    cycled_labels,
    num_classes_of,
)
from archlab.tasks.pictures import ImageGrid, Picture
from archlab.train.optim import build_optimizer, build_scheduler
from archlab.train.step import StepContext

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
    *,
    ctx: StepContext | None = None,
) -> dict[str, Any]:
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
        ctx: the engine's step context (autocast, gradient accumulation, clipping, fp16 scaling);
            the optimizers step only when ``ctx.sync``. Without one, both optimizers are zeroed
            first and step in fp32.

    Returns:
        ``{"d_loss", "g_loss", "d_real", "d_fake"}``: D's loss before its update, G's loss before
        its update (through the updated D), and D's mean logit on real / fake samples; floats, or
        detached device tensors when ``ctx`` is given (the engine syncs with the host only when
        it logs).
    """
    _check_kind(kind, "gan_step")
    plain = ctx is None
    if ctx is None:
        ctx = StepContext(real.device, "fp32", grad_clip=None, accum=1)
        opt_d.zero_grad(set_to_none=True)
        opt_g.zero_grad(set_to_none=True)
    if z is None:
        z = _draw_noise(model, real, generator)
    cond = () if y is None else (y,)  # an unconditional model gets no labels
    d = _discriminator_step(model, real, z, cond, opt_d, kind, ctx)
    loss_g = _generator_step(model, d.fake, cond, opt_g, kind, ctx)
    out = {
        "d_loss": d.loss.detach(),
        "g_loss": loss_g.detach(),
        "d_real": d.real_logits.detach().mean(),
        "d_fake": d.fake_logits.detach().mean(),
    }
    return {k: v.item() for k, v in out.items()} if plain else out


def _draw_noise(model: nn.Module, real: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """(B, latent_dim) standard normal noise in the model's dtype, drawn on the generator's device."""
    return torch.randn(
        real.shape[0],
        model.config.latent_dim,
        generator=generator,
        device=generator.device if generator is not None else real.device,
        dtype=next(model.parameters()).dtype,
    ).to(real.device)


@dataclass
class _DStep:
    """What the discriminator step leaves for the generator step and the logged figures."""

    fake: torch.Tensor  # G(z), not detached: the generator step backpropagates through it
    real_logits: torch.Tensor
    fake_logits: torch.Tensor
    loss: torch.Tensor


def _discriminator_step(
    model: nn.Module,
    real: torch.Tensor,
    z: torch.Tensor,
    cond: tuple,
    opt_d: torch.optim.Optimizer,
    kind: LossKind,
    ctx: StepContext,
) -> _DStep:
    """Generate the fake batch and update D on real and fake samples."""
    # fake is detached so this update does not reach the generator.
    with ctx.autocast():
        fake = model.generate(z, *cond)
        real_logits = model.discriminate(real, *cond).float()
        fake_logits = model.discriminate(fake.detach(), *cond).float()
        loss_d = d_loss(real_logits, fake_logits, kind)
    ctx.backward(loss_d)
    if ctx.sync:
        ctx.step(opt_d)
    return _DStep(fake, real_logits, fake_logits, loss_d)


def _generator_step(
    model: nn.Module, fake: torch.Tensor, cond: tuple, opt_g: torch.optim.Optimizer, kind: LossKind, ctx: StepContext
) -> torch.Tensor:
    """Update G through the just-updated D; D's parameters are frozen so no gradient lands on them."""
    d_params = [p for p in model.discriminator.parameters() if p.requires_grad]
    for p in d_params:
        p.requires_grad_(False)
    try:
        with ctx.autocast():
            loss_g = g_loss(model.discriminate(fake, *cond).float(), kind)
        ctx.backward(loss_g)
    finally:
        for p in d_params:
            p.requires_grad_(True)
    if ctx.sync:
        ctx.step(opt_g)
    return loss_g


# ------------------------------------------------------------------------------------ the task
class GANOptions(GenerativeOptions):
    """Options of :class:`GANTask`."""

    loss: LossKind = Field(
        "nonsaturating", description="nonsaturating (Goodfellow et al. 2014) or hinge (for a spectral-norm D)"
    )
    d_lr_ratio: float = Field(1.0, gt=0, description="discriminator lr / generator lr (TTUR, Heusel et al. 2017)")
    grid_every: int = Field(10, ge=0, description="a fixed-noise sample grid every this many evaluations; 0: none")


class GANTask(GenerativeTask):
    """Adversarial training: one discriminator step, then one generator step, per batch (:func:`gan_step`).

    The task owns **two optimizers** (discriminator, generator), each with its own schedule.
    A class-conditional GAN (``num_classes`` set, e.g. ``cdcgan_digits``) is trained on the
    batch's labels: the fake batch uses the real batch's labels and D scores both with them.
    Samples then cycle the labels 0..K-1. Evaluation reports both losses on held-out real data
    and fixed noise, and D's accuracy.
    """

    name = "gan"
    Options = GANOptions
    image_range = "symmetric"

    def __init__(self, **options: Any):
        super().__init__(**options)
        self._eval_gen: torch.Generator | None = None
        self._evals = 0

    def model_overrides(self, info: dict[str, Any], data: DataBundle) -> dict[str, Any]:
        # An MLP GAN's out_features is the flattened sample size (64 for 8x8 digits). Named as a
        # field (not "out") so a conditional DCGAN's num_classes is never taken for the output size.
        shape = data.train.inputs[0].shape[1:]
        return {"fields": {"out_features": int(torch.tensor(shape).prod())}}

    def configure_optimizers(self, model: nn.Module, cfg, total_steps: int) -> tuple[list, list]:
        """[discriminator optimizer, generator optimizer], each with its own schedule."""
        opt_d = build_optimizer(list(model.discriminator.named_parameters()), cfg)
        for group in opt_d.param_groups:
            group["lr"] = group["lr"] * self.opts.d_lr_ratio
            group["initial_lr"] = group["lr"]
        opt_g = build_optimizer(list(model.generator.named_parameters()), cfg)
        return [opt_d, opt_g], [build_scheduler(opt_d, cfg, total_steps), build_scheduler(opt_g, cfg, total_steps)]

    def training_step(
        self, model: nn.Module, batch: Split, optimizers: list, ctx: StepContext
    ) -> dict[str, torch.Tensor]:
        opt_d, opt_g = optimizers
        y = batch_labels(model, batch)  # (labels,) for a conditional GAN, () otherwise
        out = gan_step(
            model, self.prepare(model, batch.inputs[0]), opt_d, opt_g, self.opts.loss, y=y[0] if y else None, ctx=ctx
        )
        return {"loss": out["d_loss"] + out["g_loss"], "d_loss": out["d_loss"], "g_loss": out["g_loss"]}

    # -- evaluation: both losses on held-out real data and fixed noise ---------------------------
    def make_metrics(self, device: torch.device) -> dict[str, Any]:
        self._eval_gen = torch.Generator(device=device).manual_seed(1234)
        return {}

    def forward(self, model: nn.Module, batch: Split) -> tuple[torch.Tensor, torch.Tensor]:
        real = self.prepare(model, batch.inputs[0])
        y = batch_labels(model, batch)
        z = torch.randn(real.shape[0], model.config.latent_dim, device=real.device, generator=self._eval_gen)
        fake = model.generate(z, *y)
        return model.discriminate(real, *y).float().reshape(-1), model.discriminate(fake, *y).float().reshape(-1)

    def batch_loss(self, output, batch: Split) -> torch.Tensor:
        real_logits, fake_logits = output
        return d_loss(real_logits, fake_logits, self.opts.loss) + g_loss(fake_logits, self.opts.loss)

    def eval_extras(self, output, batch: Split) -> dict[str, torch.Tensor]:
        real_logits, fake_logits = output
        n = float(real_logits.numel())
        kind = self.opts.loss
        return {
            "d_loss": d_loss(real_logits, fake_logits, kind) * n,
            "g_loss": g_loss(fake_logits, kind) * n,
            "d_acc": ((real_logits > 0).float().sum() + (fake_logits < 0).float().sum()) / 2,
            "n": torch.tensor(n, device=real_logits.device),
        }

    def finish_extras(self, sums) -> dict[str, float]:
        n = max(1.0, float(sums["n"]))
        return {
            "d_loss": float(sums["d_loss"]) / n,
            "g_loss": float(sums["g_loss"]) / n,
            "d_accuracy": float(sums["d_acc"]) / n,
        }

    @torch.no_grad()
    def on_evaluate(self, model: nn.Module, step: int) -> dict[str, Picture]:
        """Every ``grid_every``-th evaluation (and the first): the samples of the same 64 noise
        vectors as ``samples_stepNNNNNN``, so progress is comparable across a run."""
        self._evals += 1
        every = self.opts.grid_every
        if every == 0 or (self._evals - 1) % every or self.modality != "image":
            return {}
        was_training = model.training
        try:
            gen = torch.Generator().manual_seed(0)  # fixed noise, independent of the training RNG
            images = self.sample(model, 64, gen)  # a conditional GAN cycles the labels 0..K-1
        finally:
            model.train(was_training)
        return {f"samples_step{step:06d}": ImageGrid(images, title=f"fixed noise, step {step}")}

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
        """``n`` generated samples in the data layout, in [0, 1] for images; a conditional GAN
        draws class ``labels`` (n,) (default: cycled 0..K-1)."""
        model.eval()
        device = next(model.parameters()).device
        z = torch.randn(n, model.config.latent_dim, generator=generator).to(device)
        if num_classes_of(model):
            y = labels if labels is not None else cycled_labels(model, n)
            return self.to_display(model.generate(z, y.to(device)).float())
        return self.to_display(model.generate(z).float())

    def predict(self, model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Discriminator logits (B,) of real samples."""
        return model.discriminate(self.prepare(model, inputs[0]))
