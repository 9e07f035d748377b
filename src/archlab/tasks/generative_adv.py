"""GAN and diffusion tasks for the trainer loop (the process functions are in tasks/gan.py and
tasks/diffusion.py; value range and sample shape handling in :mod:`archlab.tasks.generative`).

- :class:`GANTask` owns **two optimizers** (discriminator, generator) and alternates their
  steps inside one ``training_step`` through the trainer's :class:`~archlab.tasks.base.StepContext`
  (precision, accumulation and clipping apply to both). ``d_loss``, ``g_loss`` and their sum
  (``loss``, for the curve) are logged. A GAN's "validation loss" does not measure sample
  quality, so run GANs with ``restore_best: false`` (the examples do).
- :class:`DiffusionTask` trains an eps-network with the DDPM objective; class-conditional models
  (``num_classes > 0``) see the labels, dropped to the null class with ``p_uncond`` for
  classifier-free guidance. Sampling: DDPM (``steps=None``) or DDIM with ``steps``.

Both keep a fixed noise tensor (``fixed_noise``) so successive sample grids are comparable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from archlab.data.base import DataBundle, Split
from archlab.errors import ConfigError
from archlab.tasks.generative import DataRange, GenerativeTask, batch_labels, cycled_labels, num_classes_of


# ------------------------------------------------------------------------------------------------ GAN
class GANTask(GenerativeTask):
    """Adversarial training: one discriminator step, then one generator step, per batch.

    Options:
        loss: ``nonsaturating`` (Goodfellow et al. 2014) or ``hinge`` (for spectral-norm D).
        grid_every: write a fixed-noise sample grid every this many evaluations (default: every
            10th epoch) to ``RUN_DIR/samples/``; 0 turns it off.
        d_lr_ratio: discriminator lr / generator lr (TTUR, Heusel et al. 2017; 1 = same lr).

    A class-conditional GAN (``num_classes`` set, e.g. ``cdcgan_digits``) is trained on the
    batch's labels: the fake batch uses the real batch's labels and D scores both with them.
    Samples then cycle the labels 0..K-1.
    """

    name = "gan"
    image_range = "symmetric"

    def __init__(self, loss: Literal["nonsaturating", "hinge"] = "nonsaturating", d_lr_ratio: float = 1.0,
                 grid_every: int = 10, data_range: DataRange = "auto", **options: Any):
        super().__init__(data_range=data_range, **options)
        if loss not in ("nonsaturating", "hinge"):
            raise ConfigError(f"gan loss={loss!r} must be 'nonsaturating' or 'hinge'")
        if d_lr_ratio <= 0:
            raise ConfigError(f"d_lr_ratio={d_lr_ratio} must be > 0")
        if grid_every < 0:
            raise ConfigError(f"grid_every={grid_every} must be >= 0 (0 = no sample grids during training)")
        self.kind, self.d_lr_ratio, self.grid_every = loss, float(d_lr_ratio), int(grid_every)
        self._eval_gen: torch.Generator | None = None

    def options(self) -> dict[str, Any]:
        return {**super().options(), "loss": self.kind, "d_lr_ratio": self.d_lr_ratio, "grid_every": self.grid_every}

    def model_overrides(self, info: dict[str, Any], data: DataBundle) -> dict[str, Any]:
        # An MLP GAN's out_features is the flattened sample size (64 for 8x8 digits). Named as a
        # field (not "out") so a conditional DCGAN's num_classes is never taken for the output size.
        shape = data.train.inputs[0].shape[1:]
        return {"fields": {"out_features": int(torch.tensor(shape).prod())}}

    def configure_optimizers(self, model: nn.Module, cfg, total_steps: int):
        """[discriminator optimizer, generator optimizer], each with its own schedule."""
        from archlab.train.optim import build_optimizer, build_scheduler

        opt_d = build_optimizer(list(model.discriminator.named_parameters()), cfg)
        for group in opt_d.param_groups:
            group["lr"] = group["lr"] * self.d_lr_ratio
            group["initial_lr"] = group["lr"]
        opt_g = build_optimizer(list(model.generator.named_parameters()), cfg)
        return [opt_d, opt_g], [build_scheduler(opt_d, cfg, total_steps), build_scheduler(opt_g, cfg, total_steps)]

    def _z(self, model: nn.Module, n: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, model.config.latent_dim, device=device, generator=generator)

    def training_step(self, model, batch: Split, optimizers: list, ctx) -> dict[str, torch.Tensor]:
        from archlab.tasks.gan import d_loss, g_loss

        opt_d, opt_g = optimizers
        real = self.prepare(model, batch.inputs[0])
        y = batch_labels(model, batch)  # (labels,) for a conditional GAN, () otherwise
        z = self._z(model, real.shape[0], real.device)
        # Discriminator: real vs detached fake, so this update does not reach G.
        with ctx.autocast():
            fake = model.generate(z, *y)
            loss_d = d_loss(model.discriminate(real, *y).float(), model.discriminate(fake.detach(), *y).float(),
                            self.kind)
        ctx.backward(loss_d)
        if ctx.sync:
            ctx.step(opt_d)
        # Generator, through the just-updated D; D is frozen so no gradient lands on it.
        d_params = [p for p in model.discriminator.parameters() if p.requires_grad]
        for p in d_params:
            p.requires_grad_(False)
        try:
            with ctx.autocast():
                loss_g = g_loss(model.discriminate(fake, *y).float(), self.kind)
            ctx.backward(loss_g)
        finally:
            for p in d_params:
                p.requires_grad_(True)
        if ctx.sync:
            ctx.step(opt_g)
        return {"loss": (loss_d + loss_g).detach(), "d_loss": loss_d.detach(), "g_loss": loss_g.detach()}

    # -- evaluation: both losses on held-out real data and fixed noise ---------------------------
    def make_metrics(self, device: torch.device) -> dict[str, Any]:
        self._eval_gen = torch.Generator(device=device).manual_seed(1234)
        return {}

    def forward(self, model: nn.Module, batch: Split):
        real = self.prepare(model, batch.inputs[0])
        y = batch_labels(model, batch)
        z = self._z(model, real.shape[0], real.device, self._eval_gen)
        fake = model.generate(z, *y)
        return model.discriminate(real, *y).float().reshape(-1), model.discriminate(fake, *y).float().reshape(-1)

    def batch_loss(self, output, batch: Split) -> torch.Tensor:
        from archlab.tasks.gan import d_loss, g_loss

        real_logits, fake_logits = output
        return d_loss(real_logits, fake_logits, self.kind) + g_loss(fake_logits, self.kind)

    def eval_extras(self, output, batch: Split) -> dict[str, torch.Tensor]:
        from archlab.tasks.gan import d_loss, g_loss

        real_logits, fake_logits = output
        n = float(real_logits.numel())
        return {"d_loss": d_loss(real_logits, fake_logits, self.kind) * n, "g_loss": g_loss(fake_logits, self.kind) * n,
                "d_acc": ((real_logits > 0).float().sum() + (fake_logits < 0).float().sum()) / 2,
                "n": torch.tensor(n, device=real_logits.device)}

    def finish_extras(self, sums) -> dict[str, float]:
        n = max(1.0, float(sums["n"]))
        return {"d_loss": float(sums["d_loss"]) / n, "g_loss": float(sums["g_loss"]) / n,
                "d_accuracy": float(sums["d_acc"]) / n}

    @torch.no_grad()
    def on_evaluate(self, model: nn.Module, run_dir, step: int) -> None:
        """Every ``grid_every``-th evaluation (and the first), write a grid of the same 64 noise
        vectors' samples to ``RUN_DIR/samples/step_XXXXXXX.png``, so progress is comparable."""
        self._evals = getattr(self, "_evals", 0) + 1
        if self.grid_every == 0 or (self._evals - 1) % self.grid_every or self.modality != "image":
            return
        from archlab.tasks.visualize import image_grid

        was_training = model.training
        model.eval()
        try:
            gen = torch.Generator().manual_seed(0)  # fixed noise, independent of the training RNG
            images = self.sample(model, 64, gen)  # a conditional GAN cycles the labels 0..K-1
        finally:
            model.train(was_training)
        image_grid(images, Path(run_dir) / "samples" / f"step_{step:07d}.png", title=f"fixed noise, step {step}")

    @torch.no_grad()
    def sample(self, model: nn.Module, n: int, generator: torch.Generator | None = None, *,
               labels: torch.Tensor | None = None, **_: Any) -> torch.Tensor:
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


# ------------------------------------------------------------------------------------------ diffusion
class DiffusionTask(GenerativeTask):
    """DDPM training (eps-MSE, Ho et al. 2020) with DDPM / DDIM sampling and classifier-free guidance.

    Options:
        schedule: ``linear`` or ``cosine`` noise schedule over the model's ``num_timesteps``.
        p_uncond: label-drop probability for classifier-free guidance (conditional models only).
    """

    name = "diffusion"
    image_range = "symmetric"

    def __init__(self, schedule: Literal["linear", "cosine"] = "linear", p_uncond: float = 0.1,
                 data_range: DataRange = "auto", **options: Any):
        super().__init__(data_range=data_range, **options)
        if schedule not in ("linear", "cosine"):
            raise ConfigError(f"diffusion schedule={schedule!r} must be 'linear' or 'cosine'")
        if not 0 <= p_uncond <= 1:
            raise ConfigError(f"p_uncond={p_uncond} must be in [0, 1]")
        self.schedule_kind, self.p_uncond = schedule, float(p_uncond)
        self._schedule = None
        self._eval_gen: torch.Generator | None = None
        self.num_classes = 0

    def options(self) -> dict[str, Any]:
        return {**super().options(), "schedule": self.schedule_kind, "p_uncond": self.p_uncond}

    def setup(self, data: DataBundle, cfg, device: torch.device) -> None:
        super().setup(data, cfg, device)
        self.num_classes = int(data.info.get("num_classes") or 0)

    def schedule(self, model: nn.Module):
        from archlab.tasks.diffusion import make_schedule

        T = int(model.config.num_timesteps)
        if self._schedule is None or self._schedule.T != T:
            self._schedule = make_schedule(T, self.schedule_kind)
        return self._schedule

    def _labels(self, model: nn.Module, batch: Split) -> torch.Tensor | None:
        k = int(getattr(model.config, "num_classes", 0) or 0)
        if k == 0:
            return None
        if batch.target is None:
            raise ConfigError(f"a class-conditional diffusion model (num_classes={k}) needs labelled data")
        return batch.target.long()

    def forward(self, model: nn.Module, batch: Split) -> torch.Tensor:
        from archlab.tasks.diffusion import diffusion_loss

        x0 = self.prepare(model, batch.inputs[0])
        gen = None if model.training else self._eval_gen
        p = self.p_uncond if model.training else 0.0
        return diffusion_loss(model, x0, self.schedule(model), y=self._labels(model, batch), p_uncond=p, generator=gen)

    def batch_loss(self, output, batch: Split) -> torch.Tensor:
        return output.float()

    def make_metrics(self, device: torch.device) -> dict[str, Any]:
        self._eval_gen = torch.Generator(device=device).manual_seed(1234)  # same t and noise every evaluation
        return {}

    @torch.no_grad()
    def sample(self, model: nn.Module, n: int, generator: torch.Generator | None = None, *, steps: int | None = None,
               guidance: float | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` samples in the data layout (images in [0, 1]).

        Args:
            steps: DDIM steps (deterministic, eta = 0); None runs the full DDPM chain.
            guidance: classifier-free guidance weight (class-conditional models).
            labels: (n,) class ids; default cycles 0..K-1 for a conditional model.
        """
        from archlab.tasks.diffusion import ddim_sample, ddpm_sample

        model.eval()
        device = next(model.parameters()).device
        k = int(getattr(model.config, "num_classes", 0) or 0)
        y = None
        if k:
            y = (labels if labels is not None else torch.arange(n) % k).to(device)
        elif guidance is not None:
            raise ConfigError(f"guidance={guidance} needs a class-conditional model; this one has num_classes=0")
        shape = (n, *model.data_shape)
        clip = 1.0 if self.range == "symmetric" else None
        if generator is not None and generator.device != device:
            generator = torch.Generator(device=device).manual_seed(int(generator.initial_seed()))
        if steps is None:
            x = ddpm_sample(model, shape, self.schedule(model), y=y, guidance=guidance, generator=generator, clip_x0=clip)
        else:
            x = ddim_sample(model, shape, self.schedule(model), steps=steps, y=y, guidance=guidance,
                            generator=generator, clip_x0=clip)
        return self.to_display(x.float())
