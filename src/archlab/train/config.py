"""The training config: every knob of :func:`archlab.fit`, validated.

Defaults follow common training practice: AdamW with no weight decay on
biases and norm parameters, linear warmup + cosine decay, gradient clipping available, early
stopping on the validation loss when asked for. Unknown keys are rejected with the allowed keys
named; bad values raise :class:`archlab.ConfigError` naming the field and the value.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from archlab.config import ArchConfig
from archlab.train.augment import AugmentConfig
from archlab.train.transfer import TransferConfig


class TrainConfig(ArchConfig):
    """How to train: length, optimizer, schedule, precision, stopping, logging intervals.

    Where the run is written and how progress is shown are not training settings: see
    :class:`archlab.runs.spec.RunOptions`.
    """

    # -- length ---------------------------------------------------------------------------------
    epochs: int | None = Field(
        None, ge=1, description="Passes over the training split (default 10 when max_steps is unset)."
    )
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps to run; wins over epochs when both are set.")
    batch_size: int = Field(64, ge=1, description="Samples per micro-batch.")
    eval_batch_size: int | None = Field(
        None, ge=1, description="Samples per evaluation batch (default max(batch_size, 512))."
    )
    shuffle: bool = Field(
        True,
        description="Reshuffle the training split each epoch; False keeps in-order batches (MNIST-1D paper recipe).",
    )
    drop_last: bool = Field(False, description="Drop the last incomplete batch of each epoch.")

    # -- optimizer ------------------------------------------------------------------------------
    optimizer: Literal["adamw", "adam", "sgd"] = Field(
        "adamw", description="Optimizer; AdamW decays only parameters with ndim >= 2."
    )
    lr: float = Field(1e-3, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(
        0.01, ge=0, description="Weight decay on weights (ndim >= 2); biases and norm parameters get none."
    )
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam/AdamW betas.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    nesterov: bool = Field(False, description="SGD Nesterov momentum.")
    fused: bool = Field(
        False,
        description="Run the optimizer as one fused kernel (CPU since torch 2.4, CUDA): faster on models of many "
        "small tensors; results differ from the default loop in the last bits.",
    )

    # -- schedule -------------------------------------------------------------------------------
    schedule: Literal["warmup_cosine", "onecycle", "step", "constant"] = Field(
        "warmup_cosine", description="Learning-rate schedule, stepped once per optimizer step."
    )
    warmup_steps: int | None = Field(
        None, ge=0, description="Linear warmup steps (default 5% of the run for warmup_cosine, 0 otherwise)."
    )
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="Final lr / peak lr for cosine schedules.")
    step_size: int | None = Field(
        None, ge=1, description="Steps between decays of the 'step' schedule (default a third of the run)."
    )
    gamma: float = Field(0.1, gt=0, le=1, description="Decay factor of the 'step' schedule.")

    # -- stability ------------------------------------------------------------------------------
    grad_clip: float | None = Field(
        None, gt=0, description="Clip the global gradient norm to this value (helps RNNs and Transformers)."
    )
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 autocast where native, fp16 + GradScaler on other CUDA, else fp32."
    )
    allow_nonfinite_inputs: bool = Field(
        False, description="Train on inputs or targets holding NaN/Inf (default: refuse them with a DataError)."
    )
    deterministic: bool = Field(
        False, description="torch.use_deterministic_algorithms during the run (exact resume on CPU holds either way)."
    )

    # -- early stopping -------------------------------------------------------------------------
    monitor: str = Field(
        "auto",
        description="Metric that picks the best checkpoint and drives early stopping; auto: the task's selection "
        "metric (val_accuracy for classification, val_mae for regression and forecasting, val_loss otherwise).",
    )
    mode: Literal["auto", "min", "max"] = Field(
        "auto", description="Whether lower or higher 'monitor' is better; auto asks the metric."
    )
    patience: int | None = Field(
        None, ge=1, description="Evaluations without improvement before stopping; None disables early stopping."
    )
    min_delta: float = Field(0.0, ge=0, description="Smallest change of 'monitor' that counts as an improvement.")
    restore_best: bool = Field(True, description="Load the best checkpoint's weights before the final evaluation.")

    # -- loss options (classification-style tasks) ----------------------------------------------
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Cross-entropy label smoothing.")
    class_weights: list[float] | Literal["balanced"] | None = Field(
        None, description="Per-class loss weights, or 'balanced' (n / (k * count) from the training labels)."
    )
    focal_gamma: float | None = Field(
        None, ge=0, description="Use focal loss with this gamma (Lin et al. 2017) instead of cross-entropy."
    )

    # -- augmentation (image classification) -----------------------------------------------------
    augment: AugmentConfig | None = Field(
        None, description="Batch augmentation on the device: random crop, hflip, mixup, CutMix (see train/augment)."
    )

    # -- transfer (pretrained models) -----------------------------------------------------------
    transfer: TransferConfig = Field(
        default_factory=TransferConfig,
        description="Freeze patterns, head lr, layer-wise lr decay, LoRA adapters (see train/transfer).",
    )

    # -- system ---------------------------------------------------------------------------------
    seed: int = Field(0, description="Seeds python, numpy, torch and the data order.")
    device: str = Field("auto", description="auto (cuda, then mps, then cpu), or a torch device string.")
    num_workers: int = Field(
        0,
        ge=0,
        description="DataLoader workers that read a streamed split (0: the split's own choice); in-memory splits "
        "are batched by indexing and need none.",
    )

    stack: Literal["auto", "off"] = Field(
        "auto",
        description="Groups of runs (--seeds, --cv): train the members as one vmapped stack when the model and "
        "settings allow it and it pays (auto), or one at a time (off). See train/stacked.",
    )

    # -- logging and checkpoints ----------------------------------------------------------------
    eval_every: int | None = Field(
        None, ge=1, description="Evaluate every this many optimizer steps (default once per epoch)."
    )
    eval_samples: int | None = Field(
        None,
        ge=1,
        description="Evaluate during training on a fixed, evenly spaced subset of this many validation samples "
        "(a large or streamed validation split); the final metrics always use the whole split.",
    )
    log_every: int = Field(50, ge=1, description="Log training loss every this many optimizer steps.")
    checkpoint_every: int | None = Field(
        None, ge=1, description="Write last/ every this many steps (default at each evaluation)."
    )

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.optimizer == "sgd" and self.nesterov and self.momentum == 0:
            raise ValueError(f"nesterov=True needs momentum > 0; got momentum={self.momentum}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas={list(self.betas)} must each be in [0, 1)")
        if isinstance(self.class_weights, list) and any(w < 0 for w in self.class_weights):
            raise ValueError(f"class_weights={self.class_weights} must be >= 0")
        if self.device not in ("auto", "cpu", "mps") and not self.device.startswith(("cuda", "mps", "cpu")):
            raise ValueError(f"device={self.device!r} must be 'auto', 'cpu', 'mps' or 'cuda[:N]'")
        return self

    def total_steps(self, batches_per_epoch: int) -> int:
        """Optimizer steps of the whole run, given micro-batches per epoch."""
        if self.max_steps is not None:
            return self.max_steps
        epochs = self.epochs or 10
        return max(1, (epochs * batches_per_epoch) // self.grad_accum)
