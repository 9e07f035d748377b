"""The diffusion process around an eps-network: schedules, q(x_t | x_0), loss, samplers, CFG.

Any network ``model(x_t, t[, y]) -> eps`` with a ``data_shape`` property and a config with
``num_classes`` works (see :mod:`archlab.models.diffusion`). Timesteps are 0-based: t in [0, T).

Papers, with the math next to the code below:
- Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models" (DDPM): forward process,
  eps-MSE objective, ancestral sampler.
- Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models": cosine schedule.
- Song, Meng & Ermon 2020, "Denoising Diffusion Implicit Models" (DDIM): fewer-step sampler,
  deterministic at eta = 0.
- Ho & Salimans 2022, "Classifier-Free Diffusion Guidance": eps = (1 + w) eps_c - w eps_u.

:class:`DiffusionTask` trains an eps-network with the DDPM objective in ``archlab.fit``;
class-conditional models (``num_classes > 0``) see the labels, dropped to the null class with
``p_uncond`` for classifier-free guidance.

Example::

    sched = make_schedule(1000, "cosine")
    loss = diffusion_loss(model, x0, sched, y=labels)          # training step
    imgs = ddim_sample(model, (16, 1, 8, 8), sched, steps=50, y=labels, guidance=2.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from archlab.data.base import DataBundle, Split
from archlab.errors import ConfigError, ShapeError
from archlab.layers.checks import model_name
from archlab.tasks.generative_base import (
    GenerativeOptions,
    GenerativeTask,
    batch_labels,
    cycled_labels,
    num_classes_of,
)


@dataclass(frozen=True)
class Schedule:
    """A noise schedule: ``betas[t]``, ``alphas[t] = 1 - betas[t]``, ``alpha_bar[t] = prod_{s<=t} alphas[s]``.

    All are float64 (T,) tensors on the CPU; the helpers move what they need to the data's device.
    """

    betas: torch.Tensor
    alphas: torch.Tensor
    alpha_bar: torch.Tensor
    kind: str

    @property
    def T(self) -> int:
        return int(self.betas.shape[0])


def make_schedule(
    T: int,
    kind: Literal["linear", "cosine"] = "linear",
    *,
    beta_start: float | None = None,
    beta_end: float | None = None,
    s: float = 0.008,
    max_beta: float = 0.999,
) -> Schedule:
    """Build a variance schedule of ``T`` steps.

    Args:
        T: number of diffusion steps.
        kind: ``"linear"`` - Ho et al. 2020: betas evenly spaced from 1e-4 to 0.02 at T = 1000;
            for other T both ends are scaled by 1000 / T (Nichol & Dhariwal 2021's rule, so
            alpha_bar_{T-1} stays near 0) and clipped at ``max_beta``. ``"cosine"`` - Nichol &
            Dhariwal 2021: alpha_bar(t) = f(t) / f(0), f(t) = cos^2(((t/T + s) / (1 + s)) * pi/2),
            betas_t = min(1 - alpha_bar(t+1) / alpha_bar(t), 0.999).
        beta_start, beta_end: override the linear schedule's ends (used as given, not scaled).
        s: the cosine schedule's offset, which keeps beta_0 from being vanishingly small.
        max_beta: clip on betas; 0.999 avoids the singularity at t = T (alpha_bar(T) = 0).
    """
    if not isinstance(T, int) or T < 1:
        raise ConfigError(f"make_schedule expects T >= 1 (an int); got T={T!r}")
    if kind == "linear":
        scale = 1000.0 / T
        lo = beta_start if beta_start is not None else 1e-4 * scale
        hi = beta_end if beta_end is not None else 0.02 * scale
        if not (0 < lo <= hi < 1) and (beta_start is not None or beta_end is not None):
            raise ConfigError(f"make_schedule expects 0 < beta_start <= beta_end < 1; got {lo}, {hi}")
        betas = torch.linspace(lo, hi, T, dtype=torch.float64).clamp(max=max_beta)
    elif kind == "cosine":
        steps = torch.arange(T + 1, dtype=torch.float64)
        f = torch.cos(((steps / T + s) / (1 + s)) * math.pi / 2) ** 2
        ab = f / f[0]  # alpha_bar(0..T), alpha_bar(0) = 1
        betas = (1 - ab[1:] / ab[:-1]).clamp(min=0.0, max=max_beta)
    else:
        raise ConfigError(f"make_schedule kind must be 'linear' or 'cosine'; got kind={kind!r}")
    alphas = 1.0 - betas
    return Schedule(betas=betas, alphas=alphas, alpha_bar=torch.cumprod(alphas, dim=0), kind=kind)


# -- helpers ------------------------------------------------------------------------------------


def _check_timesteps(t: torch.Tensor, schedule: Schedule, batch: int) -> None:
    if not isinstance(t, torch.Tensor) or t.dtype not in (torch.int64, torch.int32) or t.shape != (batch,):
        got = f"{tuple(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
        raise ShapeError(f"diffusion expects t ({batch},) long; got {got}")
    lo, hi = int(t.min()), int(t.max())
    if lo < 0 or hi >= schedule.T:
        raise ShapeError(
            f"diffusion expects timesteps t in [0, {schedule.T}) (T={schedule.T}); got values in [{lo}, {hi}]"
        )


def _gather(values: torch.Tensor, t: torch.Tensor, ndim: int, like: torch.Tensor) -> torch.Tensor:
    """values[t] reshaped to (B, 1, ..., 1) to broadcast over a (B, ...) tensor, in like's dtype."""
    out = values.to(like.device)[t.to(like.device)].to(like.dtype)
    return out.reshape(-1, *([1] * (ndim - 1)))


def _check_conditioning(model: nn.Module, y, guidance, batch: int) -> None:
    k = num_classes_of(model)
    if guidance is not None:
        if k == 0:
            raise ConfigError(
                f"guidance={guidance} needs a class-conditional model; {model_name(model)} has num_classes=0 "
                "(build it with num_classes > 0, or pass guidance=None)"
            )
        if y is None:
            raise ConfigError(f"guidance={guidance} needs class labels y to guide towards; got y=None")
    if y is not None:
        if k == 0:
            raise ConfigError(f"{model_name(model)} is unconditional (num_classes=0); got class labels y")
        if not isinstance(y, torch.Tensor) or y.shape != (batch,):
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ShapeError(f"{model_name(model)} sampling expects y ({batch},) long; got {got}")


def _check_shape(model: nn.Module, shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    want = tuple(getattr(model, "data_shape", ()))
    if want and (len(shape) != len(want) + 1 or shape[1:] != want or shape[0] < 1):
        raise ShapeError(f"{model_name(model)} samples shape (B, {', '.join(map(str, want))}); got shape={shape}")
    return shape


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def guided_eps(
    model: nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None, guidance: float | None
) -> torch.Tensor:
    """eps_theta(x_t, t, y), with classifier-free guidance when ``guidance`` is a number.

    Ho & Salimans 2022, eq. 6: eps~ = (1 + w) eps(x_t, y) - w eps(x_t, null). w = 0 is plain
    conditional sampling; larger w trades diversity for fidelity. The two passes run separately
    (not as one doubled batch) so w = 0 reproduces the conditional pass exactly.
    """
    if y is None:
        return model(x, t)
    eps_c = model(x, t, y)
    if guidance is None:
        return eps_c
    null = torch.full_like(y, num_classes_of(model))
    eps_u = model(x, t, null)
    return (1 + guidance) * eps_c - guidance * eps_u


# -- forward process and loss -------------------------------------------------------------------


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """Sample x_t ~ q(x_t | x_0) in closed form (Ho et al. 2020, eq. 4).

    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, eps ~ N(0, I).

    Args:
        x0: (B, ...) clean data.
        t: (B,) long timesteps in [0, T).
        noise: eps, same shape as ``x0``.
    """
    if noise.shape != x0.shape:
        raise ShapeError(f"q_sample expects noise of x0's shape {tuple(x0.shape)}; got {tuple(noise.shape)}")
    _check_timesteps(t, schedule, x0.shape[0])
    ab = _gather(schedule.alpha_bar, t, x0.dim(), x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def diffusion_loss(
    model: nn.Module,
    x0: torch.Tensor,
    schedule: Schedule,
    y: torch.Tensor | None = None,
    p_uncond: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The simple DDPM objective (Ho et al. 2020, eq. 14): E_{t, eps} ||eps - eps_theta(x_t, t)||^2.

    t ~ Uniform{0..T-1}, eps ~ N(0, I). With labels ``y``, each label is replaced by the null class
    with probability ``p_uncond`` so the same network learns eps(x_t, null) for classifier-free
    guidance (Ho & Salimans 2022, Algorithm 1).

    Returns:
        Scalar mean-squared error.
    """
    if not 0.0 <= p_uncond <= 1.0:
        raise ConfigError(f"diffusion_loss expects p_uncond in [0, 1]; got p_uncond={p_uncond}")
    b = x0.shape[0]
    _check_conditioning(model, y, None, b)
    dev = x0.device
    t = torch.randint(0, schedule.T, (b,), device=dev, generator=generator)
    noise = torch.randn(x0.shape, device=dev, dtype=x0.dtype, generator=generator)
    x_t = q_sample(x0, t, noise, schedule)
    if y is not None and p_uncond > 0:
        drop = torch.rand(b, device=dev, generator=generator) < p_uncond
        y = torch.where(drop, torch.full_like(y, num_classes_of(model)), y)
    eps = model(x_t, t, y) if y is not None else model(x_t, t)
    return F.mse_loss(eps, noise)


# -- samplers -----------------------------------------------------------------------------------


@torch.no_grad()
def ddpm_sample(
    model: nn.Module,
    shape: Sequence[int],
    schedule: Schedule,
    y: torch.Tensor | None = None,
    guidance: float | None = None,
    generator: torch.Generator | None = None,
    *,
    x_T: torch.Tensor | None = None,
    variance: Literal["beta", "posterior"] = "beta",
    clip_x0: float | None = None,
) -> torch.Tensor:
    """Ancestral sampling, T network calls (Ho et al. 2020, Algorithm 2).

    x_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta(x_t, t)) + sigma_t z,
    z ~ N(0, I) for t > 0, z = 0 at t = 0; sigma_t^2 = beta_t (``"beta"``) or the posterior
    variance beta~_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) (``"posterior"``) - Ho et
    al. found both give similar samples.

    Args:
        shape: (B, *model.data_shape).
        y: (B,) class ids for a conditional model (None: unconditional / null class).
        guidance: classifier-free guidance weight w (needs a class-conditional model and y).
        generator: source of all the noise (x_T and every z), for reproducible samples.
        x_T: start from this noise instead of drawing it.
        clip_x0: if set, the implied x_0 = (x_t - sqrt(1-ab) eps) / sqrt(ab) is clipped to
            [-clip_x0, clip_x0] and the mean recomputed from it (helps images in [-1, 1]).

    Returns:
        (B, ...) samples x_0.
    """
    shape = _check_shape(model, shape)
    _check_conditioning(model, y, guidance, shape[0])
    dev = _device(model)
    x = _initial_noise(shape, x_T, dev, generator)
    betas, alphas, ab = schedule.betas, schedule.alphas, schedule.alpha_bar
    for i in reversed(range(schedule.T)):
        t = torch.full((shape[0],), i, dtype=torch.long, device=dev)
        eps = guided_eps(model, x, t, y, guidance)
        ab_t, ab_prev = float(ab[i]), float(ab[i - 1]) if i > 0 else 1.0
        if clip_x0 is None:
            mean = (x - float(betas[i]) / math.sqrt(1 - ab_t) * eps) / math.sqrt(float(alphas[i]))
        else:
            # posterior mean mu~(x_t, x0) of q(x_{t-1} | x_t, x_0) (Ho et al. 2020, eq. 7)
            x0 = ((x - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)).clamp(-clip_x0, clip_x0)
            mean = (math.sqrt(ab_prev) * float(betas[i]) / (1 - ab_t)) * x0 + (
                math.sqrt(float(alphas[i])) * (1 - ab_prev) / (1 - ab_t)
            ) * x
        if i > 0:
            var = float(betas[i]) if variance == "beta" else float(betas[i]) * (1 - ab_prev) / (1 - ab_t)
            z = torch.randn(shape, device=dev, generator=generator)
            x = mean + math.sqrt(var) * z
        else:
            x = mean
    return x


def _initial_noise(shape, x_T, dev, generator) -> torch.Tensor:
    if x_T is None:
        return torch.randn(shape, device=dev, generator=generator)
    if tuple(x_T.shape) != shape:
        raise ShapeError(f"sampling expects x_T of shape {shape}; got {tuple(x_T.shape)}")
    return x_T.to(dev, torch.float32).clone()


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """``steps`` evenly spaced timesteps from T-1 down to 0 (the DDIM sub-sequence tau)."""
    if not 1 <= steps <= T:
        raise ConfigError(f"ddim_sample expects 1 <= steps <= T={T}; got steps={steps}")
    return sorted({round(i * (T - 1) / max(steps - 1, 1)) for i in range(steps)}, reverse=True)


@torch.no_grad()
def ddim_sample(
    model: nn.Module,
    shape: Sequence[int],
    schedule: Schedule,
    steps: int = 50,
    eta: float = 0.0,
    y: torch.Tensor | None = None,
    guidance: float | None = None,
    generator: torch.Generator | None = None,
    *,
    x_T: torch.Tensor | None = None,
    clip_x0: float | None = None,
) -> torch.Tensor:
    """DDIM sampling on a sub-sequence of ``steps`` timesteps (Song et al. 2020, eq. 12).

    With ab = alpha_bar, for consecutive tau_i > tau_{i-1} (ab_prev = 1 after the last step):
        x0^   = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)
        sigma = eta * sqrt((1 - ab_prev) / (1 - ab_t)) * sqrt(1 - ab_t / ab_prev)
        x_prev = sqrt(ab_prev) x0^ + sqrt(1 - ab_prev - sigma^2) eps + sigma z
    eta = 0 is deterministic given x_T (an ODE-like map; no noise is drawn after x_T); eta = 1
    matches DDPM's posterior variance.

    Caveat: the first step divides by sqrt(alpha_bar_{T-1}), which is ~1e-3 or less for the
    cosine schedule, so a learnt eps's small errors at t = T-1 are amplified. For bounded data
    pass ``clip_x0`` (1.0 for images in [-1, 1]); for unbounded data prefer more steps or
    :func:`ddpm_sample`, which has no such division.

    Args: as :func:`ddpm_sample`, plus ``steps`` (network calls; x2 with guidance) and ``eta``.

    Returns:
        (B, ...) samples x_0.
    """
    shape = _check_shape(model, shape)
    _check_conditioning(model, y, guidance, shape[0])
    if eta < 0:
        raise ConfigError(f"ddim_sample expects eta >= 0; got eta={eta}")
    dev = _device(model)
    x = _initial_noise(shape, x_T, dev, generator)
    taus = ddim_timesteps(schedule.T, steps)
    ab = schedule.alpha_bar
    for k, i in enumerate(taus):
        t = torch.full((shape[0],), i, dtype=torch.long, device=dev)
        eps = guided_eps(model, x, t, y, guidance)
        ab_t = float(ab[i])
        ab_prev = float(ab[taus[k + 1]]) if k + 1 < len(taus) else 1.0
        x0 = (x - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)
        if clip_x0 is not None:
            x0 = x0.clamp(-clip_x0, clip_x0)
            eps = (x - math.sqrt(ab_t) * x0) / math.sqrt(1 - ab_t)  # keep eps consistent with x0
        sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab_t)) * math.sqrt(max(1 - ab_t / ab_prev, 0.0))
        x = math.sqrt(ab_prev) * x0 + math.sqrt(max(1 - ab_prev - sigma**2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * torch.randn(shape, device=dev, generator=generator)
    return x


# -- the task -----------------------------------------------------------------------------------


class DiffusionOptions(GenerativeOptions):
    """Options of :class:`DiffusionTask`."""

    schedule: Literal["linear", "cosine"] = Field(
        "linear", description="noise schedule over the model's num_timesteps (see make_schedule)"
    )
    p_uncond: float = Field(
        0.1, ge=0, le=1, description="label-drop probability for classifier-free guidance (class-conditional models)"
    )


class DiffusionTask(GenerativeTask):
    """DDPM training (eps-MSE, Ho et al. 2020) with DDPM / DDIM sampling and classifier-free guidance.

    Evaluation draws t and the noise from a generator seeded alike on every pass, so successive
    validation losses are comparable.
    """

    name = "diffusion"
    Options = DiffusionOptions
    image_range = "symmetric"

    def __init__(self, **options: Any):
        super().__init__(**options)
        self._schedule: Schedule | None = None
        self._eval_gen: torch.Generator | None = None
        self.num_classes = 0

    def setup(self, data: DataBundle, cfg, device: torch.device) -> None:
        super().setup(data, cfg, device)
        self.num_classes = int(data.info.get("num_classes") or 0)

    def schedule(self, model: nn.Module) -> Schedule:
        """The noise schedule for the model's ``num_timesteps`` (built once)."""
        T = int(model.config.num_timesteps)
        if self._schedule is None or self._schedule.T != T:
            self._schedule = make_schedule(T, self.opts.schedule)
        return self._schedule

    def forward(self, model: nn.Module, batch: Split) -> torch.Tensor:
        x0 = self.prepare(model, batch.inputs[0])
        y = batch_labels(model, batch)  # (labels,) for a class-conditional model, () otherwise
        gen = None if model.training else self._eval_gen
        p = self.opts.p_uncond if model.training else 0.0
        return diffusion_loss(model, x0, self.schedule(model), y=y[0] if y else None, p_uncond=p, generator=gen)

    def batch_loss(self, output, batch: Split) -> torch.Tensor:
        return output.float()

    def make_metrics(self, device: torch.device) -> dict[str, Any]:
        self._eval_gen = torch.Generator(device=device).manual_seed(1234)  # same t and noise every evaluation
        return {}

    @torch.no_grad()
    def sample(
        self,
        model: nn.Module,
        n: int,
        generator: torch.Generator | None = None,
        *,
        steps: int | None = None,
        guidance: float | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``n`` samples in the data layout (images in [0, 1]).

        Args:
            generator: source of all the noise; a CPU generator for a model on another device is
                replaced by one on that device seeded alike.
            steps: DDIM steps (deterministic, eta = 0); None runs the full DDPM chain.
            guidance: classifier-free guidance weight (class-conditional models).
            labels: (n,) class ids; default cycles 0..K-1 for a conditional model.
        """
        model.eval()
        device = next(model.parameters()).device
        y = None
        if num_classes_of(model):
            y = (labels if labels is not None else cycled_labels(model, n)).to(device)
        elif guidance is not None:
            raise ConfigError(f"guidance={guidance} needs a class-conditional model; this one has num_classes=0")
        shape = (n, *model.data_shape)
        clip = 1.0 if self.range == "symmetric" else None
        if generator is not None and generator.device != device:
            generator = torch.Generator(device=device).manual_seed(int(generator.initial_seed()))
        sched = self.schedule(model)
        if steps is None:
            x = ddpm_sample(model, shape, sched, y=y, guidance=guidance, generator=generator, clip_x0=clip)
        else:
            x = ddim_sample(model, shape, sched, steps=steps, y=y, guidance=guidance, generator=generator, clip_x0=clip)
        return self.to_display(x.float())
