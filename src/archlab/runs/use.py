"""Use a finished run: load it, evaluate it on a dataset's splits, predict on new inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from archlab.checkpoint import load as load_model
from archlab.errors import CheckpointError, DataError
from archlab.rundir import RunDir, final_checkpoint
from archlab.tasks import get_task
from archlab.train.config import TrainConfig
from archlab.train.evaluate import evaluate_split, predict_split

# Display options that older run files kept in their train section; they are not training settings.
_LEGACY_TRAIN_KEYS = ("quiet", "tensorboard", "out_dir", "run_name")


def saved_train(saved: dict[str, Any]) -> dict[str, Any]:
    """The train section of a run's config.yaml as TrainConfig fields."""
    train = saved.get("train") or {}
    if not isinstance(train, dict):
        raise CheckpointError(f"config.yaml: 'train' must be a mapping; got {type(train).__name__}")
    return {k: v for k, v in train.items() if k not in _LEGACY_TRAIN_KEYS}


def load_run(run_dir: str | Path, device: str = "cpu"):
    """(saved config, model with the run's final weights, task, checkpoint path) of a run."""
    run = RunDir(run_dir)
    saved = run.read_config()
    ckpt = final_checkpoint(run.path, saved)
    if ckpt is None:
        raise CheckpointError(f"{run_dir} has no complete checkpoint (best/ or last/)")
    model = load_model(ckpt, device=device)
    task_saved = saved.get("task") or {}
    task = get_task(task_saved.get("name"), **(task_saved.get("options") or {}))
    return saved, model, task, ckpt


def _run_data(saved: dict[str, Any], data: str | None):
    from archlab.data import load

    spec = saved.get("data") or {}
    return load(data or spec["name"], **({} if data else spec.get("options") or {}))


def evaluate(run_dir: str | Path, data: str | None = None, splits: list[str] | None = None) -> dict[str, float]:
    """Loss and metrics of a run's final weights on ``splits`` (default val and test) of its data
    (or of ``data``, a dataset name or path)."""
    saved, model, task, _ = load_run(run_dir)
    bundle = _run_data(saved, data)
    cfg = TrainConfig.build(saved_train(saved))
    device = torch.device("cpu")
    task.setup(bundle, cfg, device)
    have = bundle.splits()
    wanted = splits or [s for s in ("val", "test") if s in have] or ["train"]
    missing = [s for s in wanted if s not in have]
    if missing:
        raise DataError(f"dataset {bundle.name!r} has no split(s) {missing}; it has {sorted(have)}")
    metrics: dict[str, float] = {}
    for s in wanted:
        metrics.update(
            evaluate_split(model, task, have[s], batch_size=cfg.eval_batch_size or 512, device=device, prefix=s)
        )
    return metrics


def predict(run_dir: str | Path, inputs: str | Path | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Predictions of a run's final weights.

    Args:
        inputs: a tuple of model-input tensors, an ``.npy`` file of model inputs (already in the
            model's input format), or the name of a split of the run's dataset (``test``).
    """
    saved, model, task, _ = load_run(run_dir)
    if isinstance(inputs, (str, Path)) and str(inputs).endswith(".npy"):
        inputs = (_read_npy(Path(inputs)),)
    elif isinstance(inputs, (str, Path)):
        bundle = _run_data(saved, None)
        have = bundle.splits()
        if str(inputs) not in have:
            raise DataError(
                f"INPUT {str(inputs)!r} is neither an .npy file nor a split of {bundle.name!r} ({sorted(have)})"
            )
        inputs = have[str(inputs)].inputs
    return predict_split(model, task, tuple(inputs), batch_size=512, device=torch.device("cpu"))


def _read_npy(path: Path) -> torch.Tensor:
    if not path.is_file():
        raise DataError(f"input file {path} does not exist")
    with open(path, "rb") as fh:
        if fh.read(6) != b"\x93NUMPY":
            raise DataError(f"{path}: expected a .npy file (numpy's format, np.save); its header is not one")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npy array of numbers ({str(exc).splitlines()[0][:120]})") from None
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{path}: expected a numeric array; got dtype {arr.dtype}")
    if arr.size == 0:
        raise DataError(f"{path}: expected at least one sample; got an empty array of shape {arr.shape}")
    x = torch.from_numpy(np.ascontiguousarray(arr))
    if x.is_floating_point():
        if not bool(torch.isfinite(x).all()):
            raise DataError(f"{path}: expected finite values; got NaN or Inf")
        return x.float()
    return x.long()
