"""Generative and unsupervised tasks: reconstruction / anomaly detection, VAE and normalizing flows.

These tasks wrap the process functions of :mod:`archlab.tasks.reconstruction`,
:mod:`archlab.tasks.vae` and :mod:`archlab.tasks.flow` so that the one trainer loop
(``archlab.fit``) trains autoencoders, VAEs and flows like any classifier. GANs and diffusion
models, whose steps are more involved, live in :mod:`archlab.tasks.generative_adv`.

Two things every generative task does before the network sees a batch (:class:`GenerativeTask`):

- **value range**: a bundle's images are standardised with train statistics
  (``info["normalization"]``); a sigmoid decoder wants pixels in [0, 1] and a Tanh generator or
  a diffusion model wants [-1, 1]. ``data_range`` picks ``unit`` ([0, 1]), ``symmetric``
  ([-1, 1]) or ``standard`` (as loaded); ``auto`` chooses per task for images and ``standard``
  for every other modality (points, tables). :meth:`GenerativeTask.to_display` maps samples back.
- **shape**: a flat-vector model (``autoencoder_digits``, ``vae_digits``, ``gan_mlp``) gets
  (B, 1, 8, 8) images flattened to (B, 64), and its samples are reshaped back to images for grids.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn

from archlab.data.base import DataBundle, Split
from archlab.errors import ConfigError, ShapeError
from archlab.tasks.base import Task, torchmetrics

DataRange = Literal["auto", "unit", "symmetric", "standard"]


def data_shape_of(model: nn.Module) -> tuple[int, ...] | None:
    """Shape of one data sample the model consumes or generates (no batch), from its config.

    Read from ``model.data_shape`` when it has one (diffusion, flows), else from the config
    fields ``input_shape`` / ``in_features`` / ``image_size`` (+ channels) / ``out_features``.
    Reading the config (not calling ``example_input``) draws no random numbers, which keeps an
    interrupted-and-resumed run bitwise equal to an uninterrupted one.
    """
    shape = getattr(model, "data_shape", None)
    if shape:
        return tuple(int(s) for s in shape)
    cfg = getattr(model, "config", None)
    if cfg is None:
        return None
    if getattr(cfg, "input_shape", None):
        return tuple(int(s) for s in cfg.input_shape)
    if getattr(cfg, "in_features", None) and not hasattr(cfg, "field_sizes"):
        return (int(cfg.in_features),)
    if getattr(cfg, "image_size", None):
        channels = getattr(cfg, "in_channels", None) or getattr(cfg, "image_channels", None) or 1
        return (int(channels), int(cfg.image_size), int(cfg.image_size))
    if getattr(cfg, "out_features", None):
        return (int(cfg.out_features),)
    return None


def num_classes_of(model: nn.Module) -> int:
    """Classes a generative model is conditioned on (``config.num_classes``); 0 = unconditional."""
    return int(getattr(getattr(model, "config", None), "num_classes", None) or 0)


def cycled_labels(model: nn.Module, n: int) -> torch.Tensor | None:
    """Labels 0, 1, ..., K-1, 0, 1, ... (n,) for sampling a class-conditional model; None if unconditional."""
    k = num_classes_of(model)
    return torch.arange(n) % k if k else None


def batch_labels(model: nn.Module, batch: Split) -> tuple[torch.Tensor, ...]:
    """``(y,)`` with the batch's class ids for a class-conditional model, ``()`` for an unconditional one."""
    k = num_classes_of(model)
    if k == 0:
        return ()
    if batch.target is None:
        raise ConfigError(f"a class-conditional {model.__class__.__name__} (num_classes={k}) needs labelled data; "
                          "the batch has no target y")
    return (batch.target.long(),)


def fit_shape(x: torch.Tensor, shape: tuple[int, ...] | None, what: str) -> torch.Tensor:
    """Reshape (B, ...) data to (B, *shape) when only the layout differs (flatten / unflatten)."""
    if shape is None or tuple(x.shape[1:]) == shape:
        return x
    if math.prod(x.shape[1:]) == math.prod(shape):
        return x.reshape(x.shape[0], *shape)  # (B, 1, 8, 8) <-> (B, 64)
    raise ShapeError(f"{what} expects samples of shape {shape} ({math.prod(shape)} values); the data has "
                     f"{tuple(x.shape[1:])} ({math.prod(x.shape[1:])} values) - pick a preset sized for the data "
                     "or override its in_features / image_size")


class GenerativeTask(Task):
    """Shared set-up of the generative tasks: value range and sample shape (see module docs)."""

    needs_target = False
    #: range used for images when data_range="auto"
    image_range: str = "unit"

    def __init__(self, data_range: DataRange = "auto", **options: Any):
        super().__init__(**options)
        if data_range not in ("auto", "unit", "symmetric", "standard"):
            raise ConfigError(f"data_range={data_range!r} must be auto, unit, symmetric or standard")
        self.data_range = data_range
        self.range = "standard"
        self.norm: dict[str, Any] | None = None
        self.modality = ""
        self.sample_shape: tuple[int, ...] | None = None  # shape of one sample as the data holds it

    def setup(self, data: DataBundle, cfg, device: torch.device) -> None:
        super().setup(data, cfg, device)
        self.modality = data.modality
        self.norm = data.info.get("normalization")
        self.sample_shape = tuple(int(s) for s in data.train.inputs[0].shape[1:])
        self.range = self.data_range if self.data_range != "auto" else (
            self.image_range if data.modality == "image" else "standard")
        if self.range != "standard" and data.modality != "image":
            raise ConfigError(f"data_range={self.range!r} rescales image pixels; dataset {data.name!r} is "
                              f"{data.modality} - use data_range='standard'")

    def options(self) -> dict[str, Any]:
        return {"data_range": self.data_range}

    # -- value range -------------------------------------------------------------------------------
    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not self.norm:
            return None
        mean = torch.tensor(self.norm["mean"], dtype=x.dtype, device=x.device)
        std = torch.tensor(self.norm["std"], dtype=x.dtype, device=x.device)
        if self.norm.get("over") == "channel":
            shape = (1, -1) + (1,) * (x.ndim - 2)
            mean, std = mean.reshape(shape), std.reshape(shape)
        return mean, std

    def to_model_range(self, x: torch.Tensor) -> torch.Tensor:
        """Data as loaded -> the task's range (images: undo the standardisation, then rescale)."""
        if self.range == "standard":
            return x
        stats = self._stats(x)
        if stats is not None:
            x = x * stats[1] + stats[0]  # back to pixels in [0, 1]
        x = x.clamp(0.0, 1.0)
        return x if self.range == "unit" else x * 2.0 - 1.0

    def to_display(self, x: torch.Tensor) -> torch.Tensor:
        """Samples in the task's range -> data layout for viewing (images in [0, 1])."""
        if self.sample_shape is not None and x.ndim >= 2 and math.prod(x.shape[1:]) == math.prod(self.sample_shape):
            x = x.reshape(x.shape[0], *self.sample_shape)
        if self.range == "unit":
            return x.clamp(0, 1)
        if self.range == "symmetric":
            return ((x + 1.0) / 2.0).clamp(0, 1)
        return x

    def prepare(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """A batch of data, in range and in the model's sample shape."""
        return fit_shape(self.to_model_range(x), data_shape_of(model), model.__class__.__name__)

    def make_metrics(self, device: torch.device) -> dict[str, Any]:
        return {}

    def update_metrics(self, metrics, output, batch) -> None:
        return None

    def predict(self, model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return model(self.prepare(model, inputs[0]))


# ---------------------------------------------------------------------------------- reconstruction
class ReconstructionTask(GenerativeTask):
    """Autoencoder training by reconstruction error, with anomaly scores.

    Options:
        loss: ``mse`` or ``bce`` (for sigmoid outputs and data in [0, 1]).
        anomaly_class: a class id of a labelled dataset held out as the anomaly: it is removed
            from the training split (on the bundle passed to ``fit``), and every evaluation
            reports ``auroc`` (anomaly score vs "is that class"), the mean scores of normal and
            anomalous samples, and ``threshold``: the ``quantile`` of the normal samples' scores.
            The threshold of the latest validation pass is kept in ``self.threshold``; a test
            pass after it reports ``recall`` / ``false_alarm_rate`` at that threshold.
        quantile: the normal-score quantile used as threshold (0.99 flags ~1% of normal data).
    """

    name = "reconstruction"
    image_range = "unit"

    def __init__(self, loss: Literal["mse", "bce"] = "mse", anomaly_class: int | None = None,
                 quantile: float = 0.99, data_range: DataRange = "auto", **options: Any):
        super().__init__(data_range=data_range, **options)
        if loss not in ("mse", "bce"):
            raise ConfigError(f"reconstruction loss={loss!r} must be 'mse' or 'bce'")
        if not 0 < quantile <= 1:
            raise ConfigError(f"quantile={quantile} must be in (0, 1]")
        self.kind, self.anomaly_class, self.quantile = loss, anomaly_class, quantile
        self.threshold: float | None = None
        self._scores: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    def options(self) -> dict[str, Any]:
        return {**super().options(), "loss": self.kind, "anomaly_class": self.anomaly_class, "quantile": self.quantile}

    def setup(self, data: DataBundle, cfg, device: torch.device) -> None:
        super().setup(data, cfg, device)
        if self.anomaly_class is None:
            return
        if data.train.target is None:
            raise ConfigError(f"anomaly_class={self.anomaly_class} needs class labels; dataset {data.name!r} has none")
        y = data.train.target
        if not bool((y == self.anomaly_class).any()):
            raise ConfigError(f"anomaly_class={self.anomaly_class} does not occur in {data.name!r}'s labels")
        keep = y != self.anomaly_class
        data.train = Split(inputs=tuple(t[keep] for t in data.train.inputs), target=y[keep])  # normal data only

    def forward(self, model: nn.Module, batch: Split) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prepare(model, batch.inputs[0])
        out = model(x)
        return (out[0] if isinstance(out, (tuple, list)) else out), x

    def batch_loss(self, output, batch: Split) -> torch.Tensor:
        from archlab.tasks.reconstruction import reconstruction_loss

        x_hat, x = output
        return reconstruction_loss(x_hat.float(), x.float(), self.kind)

    def scores(self, output) -> torch.Tensor:
        from archlab.tasks.reconstruction import per_sample_error

        x_hat, x = output
        return per_sample_error(x_hat.float(), x.float(), self.kind)

    def make_metrics(self, device: torch.device) -> dict[str, Any]:
        self._scores, self._labels = [], []
        if self.anomaly_class is None:
            return {}
        return {"auroc": torchmetrics().classification.BinaryAUROC().to(device)}

    def update_metrics(self, metrics, output, batch: Split) -> None:
        if self.anomaly_class is None or batch.target is None:
            return
        s = self.scores(output)
        is_anomaly = (batch.target == self.anomaly_class).long()
        metrics["auroc"].update(s, is_anomaly)
        self._scores.append(s.detach())
        self._labels.append(is_anomaly)

    def eval_extras(self, output, batch: Split) -> dict[str, torch.Tensor]:
        s = self.scores(output)
        return {"score_sum": s.sum(), "n": torch.tensor(float(s.numel()), device=s.device)}

    def finish_extras(self, sums) -> dict[str, float]:
        out = {"mean_score": float(sums["score_sum"]) / max(1.0, float(sums["n"]))}
        if self.anomaly_class is None or not self._scores:
            return out
        s, lab = torch.cat(self._scores).float().cpu(), torch.cat(self._labels).cpu()
        normal, anomalous = s[lab == 0], s[lab == 1]
        if len(normal):
            out["mean_score_normal"] = float(normal.mean())
            if self.threshold is not None:  # the threshold of the previous (validation) pass
                out["false_alarm_rate"] = float((normal > self.threshold).float().mean())
            thr = float(torch.quantile(normal.double(), self.quantile))
        if len(anomalous):
            out["mean_score_anomaly"] = float(anomalous.mean())
            if self.threshold is not None:
                out["recall"] = float((anomalous > self.threshold).float().mean())
        if len(normal):
            out["threshold"] = thr
            self.threshold = thr
        return out

    def predict(self, model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Per-sample anomaly scores (B,) - higher is more unusual."""
        return self.scores(self.forward(model, Split(inputs=inputs)))


# ----------------------------------------------------------------------------------------------- VAE
class VAETask(GenerativeTask):
    """VAE training on the negative ELBO; reconstruction and KL are logged separately.

    Options: ``beta`` (KL weight; 1 = the ELBO), ``recon`` (``bce`` for sigmoid decoders on
    [0, 1] data, ``mse`` otherwise).
    """

    name = "vae"
    image_range = "unit"

    def __init__(self, beta: float = 1.0, recon: Literal["bce", "mse"] = "bce", data_range: DataRange = "auto",
                 **options: Any):
        super().__init__(data_range=data_range, **options)
        if recon not in ("bce", "mse"):
            raise ConfigError(f"vae recon={recon!r} must be 'bce' or 'mse'")
        if beta < 0:
            raise ConfigError(f"vae beta={beta} must be >= 0")
        self.beta, self.recon = float(beta), recon

    def options(self) -> dict[str, Any]:
        return {**super().options(), "beta": self.beta, "recon": self.recon}

    def forward(self, model: nn.Module, batch: Split):
        x = self.prepare(model, batch.inputs[0])
        x_hat, mu, logvar = model(x, *batch_labels(model, batch))  # a conditional VAE also gets y
        return x_hat, x, mu, logvar

    def parts(self, output) -> dict[str, torch.Tensor]:
        from archlab.tasks.vae import elbo_loss

        x_hat, x, mu, logvar = output
        return elbo_loss(x_hat.float(), x.float(), mu.float(), logvar.float(), beta=self.beta, recon=self.recon)

    def batch_loss(self, output, batch: Split) -> torch.Tensor:
        return self.parts(output)["total"]

    def training_step(self, model, batch, optimizers, ctx):
        with ctx.autocast():
            parts = self.parts(self.forward(model, batch))
        ctx.backward(parts["total"])
        if ctx.sync:
            ctx.step(optimizers[0])
        return {"loss": parts["total"].detach(), "reconstruction": parts["reconstruction"].detach(),
                "kl": parts["kl"].detach()}

    def eval_extras(self, output, batch: Split) -> dict[str, torch.Tensor]:
        p = self.parts(output)
        n = float(output[1].shape[0])
        return {"reconstruction": p["reconstruction"] * n, "kl": p["kl"] * n,
                "n": torch.tensor(n, device=p["kl"].device)}

    def finish_extras(self, sums) -> dict[str, float]:
        n = max(1.0, float(sums["n"]))
        return {"reconstruction": float(sums["reconstruction"]) / n, "kl": float(sums["kl"]) / n}

    @torch.no_grad()
    def sample(self, model: nn.Module, n: int, generator: torch.Generator | None = None, *,
               labels: torch.Tensor | None = None, **_: Any) -> torch.Tensor:
        """``n`` prior samples in the data layout for viewing; a conditional VAE draws class
        ``labels`` (n,) (default: cycled 0..K-1)."""
        model.eval()
        if num_classes_of(model):
            y = labels if labels is not None else cycled_labels(model, n)
            return self.to_display(model.sample(n, generator=generator, y=y))
        return self.to_display(model.sample(n, generator=generator))


# ---------------------------------------------------------------------------------------------- flows
class FlowTask(GenerativeTask):
    """Maximum likelihood for normalizing flows: NLL in nats, bits/dim, and a Gaussian baseline.

    Every evaluation also reports ``gaussian_nll``: the NLL of a full-covariance Gaussian fitted
    (maximum likelihood) to the training split in the same space - the density a flow must beat.
    For images, ``dequantize=n_bins`` adds uniform noise to the integer pixel levels (Theis et al.
    2016) and ``bits_per_dim`` includes the log(n_bins) term (17 levels for sklearn's digits).
    """

    name = "flow"
    image_range = "unit"

    def __init__(self, dequantize: int | None = None, data_range: DataRange = "auto", **options: Any):
        super().__init__(data_range=data_range, **options)
        if dequantize is not None and dequantize < 2:
            raise ConfigError(f"dequantize={dequantize} must be the number of discrete levels (>= 2) or None")
        self.n_bins = dequantize
        self.gauss: tuple[torch.Tensor, torch.Tensor] | None = None
        self.dims = 1

    def options(self) -> dict[str, Any]:
        return {**super().options(), "dequantize": self.n_bins}

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

    _eval_gen = None

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
        model.eval()
        return self.to_display(model.sample(n, generator=generator))
