"""Use a finished run: load it, evaluate it on a dataset's splits or a file, predict on new inputs.

New data goes through the run's recorded :class:`~archlab.data.preprocess.Preprocessing`, the
same steps (and train-split statistics) its training data went through.

The weights are the run's final model (best/ or last/, as the run ended). When that checkpoint
fails its integrity check, an older one that verifies answers instead: every result says which
one answered and why (:class:`~archlab.rundir.FinalWeights`, a warning is logged), and
``strict=True`` makes that a :class:`CheckpointError` instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from archlab.checkpoint import load as load_model
from archlab.data.base import DataBundle, Split, apply_normalization, is_streamed
from archlab.data.preprocess import Preprocessing
from archlab.errors import CheckpointError, DataError
from archlab.rundir import FinalWeights, RunDir
from archlab.runs.spec import MOVED_TRAIN_KEYS
from archlab.subject import resolve_run
from archlab.tasks import get_task
from archlab.train.config import TrainConfig
from archlab.train.evaluate import evaluate_split, predict_split


def saved_train(saved: dict[str, Any]) -> dict[str, Any]:
    """The train section of a run's config.yaml as TrainConfig fields."""
    train = saved.get("train") or {}
    if not isinstance(train, dict):
        raise CheckpointError(f"config.yaml: 'train' must be a mapping; got {type(train).__name__}")
    # options older runs recorded in train, which are not training settings (see runs.spec)
    return {k: v for k, v in train.items() if k not in MOVED_TRAIN_KEYS}


@dataclass
class LoadedRun:
    """A run loaded for use; unpacks as ``saved, model, task, checkpoint``.

    Attributes:
        saved: the run's config.yaml.
        model: the module with the weights of ``checkpoint``.
        task: the run's task.
        checkpoint: the checkpoint directory that answered.
        weights: which checkpoint that is and, for a fallback, why (see the module docstring).
    """

    saved: dict[str, Any]
    model: torch.nn.Module
    task: Any
    checkpoint: Path
    weights: FinalWeights

    def __iter__(self) -> Iterator[Any]:
        return iter((self.saved, self.model, self.task, self.checkpoint))


@dataclass
class Evaluation(Mapping[str, float]):
    """What :func:`evaluate` returns: a mapping of metric name to value, and the weights measured."""

    metrics: dict[str, float]
    weights: FinalWeights

    def __getitem__(self, key: str) -> float:
        return self.metrics[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.metrics)

    def __len__(self) -> int:
        return len(self.metrics)

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": 1, "metrics": dict(self.metrics), "weights": self.weights.to_dict()}


@dataclass
class Predictions:
    """What :func:`predict_run` returns: the predictions and the weights that made them."""

    values: torch.Tensor
    weights: FinalWeights


def load_run(
    run_dir: str | Path, device: str = "cpu", *, model: torch.nn.Module | None = None, strict: bool = False
) -> LoadedRun:
    """A run's saved config, model with its final weights, task and checkpoint (see :class:`LoadedRun`).

    Args:
        model: for a run of your own ``nn.Module``, a fresh instance to fill with the run's
            weights (``load_run(run, model=MyNet())``); without it the module is rebuilt from
            the recorded import path and constructor arguments when its module is imported.
        strict: refuse a fallback checkpoint (the run's final one failing its integrity check).

    Raises:
        CheckpointError: no complete checkpoint verifies, or ``strict`` and only a fallback does.
    """
    subject = resolve_run(run_dir)
    saved = subject.run_config()
    weights = subject.final_weights(strict=strict)
    model = load_model(weights.path, device=device, model=model)
    task_saved = saved.get("task") or {}
    task = get_task(task_saved.get("name"), **(task_saved.get("options") or {}))
    return LoadedRun(saved, model, task, weights.path, weights)


def _run_data(saved: dict[str, Any], data: str | None):
    from archlab.data import load

    spec = saved.get("data") or {}
    return load(data or spec["name"], **({} if data else spec.get("options") or {}))


def run_preprocessing(run_dir: str | Path) -> Preprocessing:
    """The preprocessing a run recorded in ``data_info.json``; for a run from before it was
    recorded, rebuilt from the run's dataset (reloaded by name with its saved options)."""
    run = RunDir(run_dir)
    info_path = run.data_info_path
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    if isinstance(info, dict) and isinstance(info.get("preprocessing"), dict):
        return Preprocessing.from_json(info["preprocessing"])
    return Preprocessing.from_bundle(_run_data(run.read_config(), None))


def _is_file_input(data: str | Path | None) -> bool:
    from archlab.data.bundled import is_bundled_name

    return data is not None and Path(data).exists() and not is_bundled_name(str(data))


def _file_bundle(run_dir: str | Path, path: str | Path) -> DataBundle:
    """A user's file read with the run's preprocessing, as one split ``file`` (targets required)."""
    prep = run_preprocessing(run_dir)
    x, y = prep.read(path)
    if y is None:
        raise DataError(
            f"{path}: evaluate needs targets (the target column, class folders, next tokens); "
            "got inputs only - use `archlab predict`"
        )
    # the model was trained on standardised targets when the run recorded their statistics
    target = apply_normalization(torch.from_numpy(y), prep.target_normalization)
    split = Split(inputs=(torch.from_numpy(x),), target=target if y.dtype.kind in "iu" else target.float())
    info = json.loads(RunDir(run_dir).data_info_path.read_text(encoding="utf-8"))

    return DataBundle(name=str(path), modality=prep.modality, task=prep.task, train=split, info=info)


def evaluate(
    run_dir: str | Path,
    data: str | Path | None = None,
    splits: list[str] | None = None,
    *,
    model: torch.nn.Module | None = None,
    strict: bool = False,
) -> Evaluation:
    """Loss and metrics of a run's final weights on ``splits`` (default val and test) of its data,
    of another dataset name, or of a file (CSV rows with the target column, an image folder of
    class subfolders, a text file), read with the run's preprocessing as the split ``file``.

    ``model``: an instance of your own class for a run of a plain ``nn.Module`` saved without
    constructor arguments (see :func:`load_run`). ``strict``: refuse a fallback checkpoint.
    The result reads as a mapping of metrics; its ``weights`` say which checkpoint answered."""
    loaded = load_run(run_dir, model=model, strict=strict)
    saved, model, task = loaded.saved, loaded.model, loaded.task
    if _is_file_input(data):
        bundle = _file_bundle(run_dir, data)
        have = {"file": bundle.train}
    else:
        bundle = _run_data(saved, None if data is None else str(data))
        have = bundle.splits()
    cfg = TrainConfig.build(saved_train(saved))
    device = torch.device("cpu")
    task.setup(bundle, cfg, device)
    wanted = splits or [s for s in ("file", "val", "test") if s in have] or ["train"]
    missing = [s for s in wanted if s not in have]
    if missing:
        raise DataError(f"dataset {bundle.name!r} has no split(s) {missing}; it has {sorted(have)}")
    metrics: dict[str, float] = {}
    for s in wanted:
        metrics.update(
            evaluate_split(model, task, have[s], batch_size=cfg.eval_batch_size or 512, device=device, prefix=s)
        )
    return Evaluation(metrics, loaded.weights)


def predict(
    run_dir: str | Path,
    inputs: str | Path | tuple[torch.Tensor, ...],
    *,
    model: torch.nn.Module | None = None,
    strict: bool = False,
) -> torch.Tensor:
    """Predictions of a run's final weights: :func:`predict_run`'s values (a fallback checkpoint
    is logged as a warning; ``strict=True`` refuses it)."""
    return predict_run(run_dir, inputs, model=model, strict=strict).values


def predict_run(
    run_dir: str | Path,
    inputs: str | Path | tuple[torch.Tensor, ...],
    *,
    model: torch.nn.Module | None = None,
    strict: bool = False,
) -> Predictions:
    """Predictions of a run's final weights (class ids, values, token ids: the task's), with the
    checkpoint that made them.

    Args:
        inputs: what a user has, read with the run's recorded preprocessing: an ``.npy`` of raw
            values (the data source's units, e.g. digits' pixels 0..16), CSV rows with the
            training columns (the target column is optional and ignored), an image file or a
            folder of images, a text file; or the name of a split of the run's dataset
            (``test``); or a tuple of model-input tensors, used as they are.

        model: an instance of your own class for a run of a plain ``nn.Module`` saved without
            constructor arguments (see :func:`load_run`).
        strict: refuse a fallback checkpoint (see the module docstring).

    Use :meth:`Preprocessing.readable` (``run_preprocessing(run_dir)``) for class names.
    """
    loaded = load_run(run_dir, model=model, strict=strict)
    return Predictions(_predict(run_dir, loaded, inputs), loaded.weights)


def _predict(run_dir: str | Path, loaded: LoadedRun, inputs: str | Path | tuple[torch.Tensor, ...]) -> torch.Tensor:
    saved, model, task = loaded.saved, loaded.model, loaded.task
    if isinstance(inputs, (str, Path)) and not Path(inputs).exists() and Path(inputs).suffix == "":
        bundle = _run_data(saved, None)
        have = bundle.splits()
        if str(inputs) not in have:
            raise DataError(f"INPUT {str(inputs)!r} is neither a file nor a split of {bundle.name!r} ({sorted(have)})")
        split = have[str(inputs)]
        if is_streamed(split):  # read from disk a batch at a time, never whole
            n, cpu = len(split), torch.device("cpu")
            parts = [
                predict_split(model, task, split.take(slice(lo, min(lo + 512, n))).inputs, batch_size=512, device=cpu)
                for lo in range(0, n, 512)
            ]
            return torch.cat(parts) if parts else torch.empty(0)
        inputs = split.inputs
    elif isinstance(inputs, (str, Path)):
        inputs = (torch.from_numpy(run_preprocessing(run_dir).read(inputs)[0]),)
    return predict_split(model, task, tuple(inputs), batch_size=512, device=torch.device("cpu"))


def save_predictions(path: str | Path, predictions: torch.Tensor, readable: list[Any]) -> Path:
    """Write predictions by the file's suffix: ``.csv`` (row, prediction), ``.json`` (a list of
    {row, prediction}) or ``.npy`` (the raw prediction array)."""
    import csv
    import io

    import numpy as np

    from archlab.io import atomic_write_bytes, atomic_write_json, atomic_write_text

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        buf = io.BytesIO()
        np.save(buf, predictions.numpy(), allow_pickle=False)
        return atomic_write_bytes(path, buf.getvalue())
    if suffix == ".json":
        return atomic_write_json(path, [{"row": i, "prediction": v} for i, v in enumerate(readable)])
    if suffix == ".csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["row", "prediction"])
        writer.writerows([i, json.dumps(v) if isinstance(v, list) else v] for i, v in enumerate(readable))
        return atomic_write_text(path, buf.getvalue())
    raise DataError(f"--output must end in .csv, .json or .npy; got {path.name!r}")
