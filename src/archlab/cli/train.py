"""``archlab train``, ``archlab evaluate RUN_DIR`` and ``archlab predict RUN_DIR INPUT``.

``--set`` scheme (repeatable; values parse as YAML)::

    --set model.hidden_sizes=[64,64]   model config field
    --set train.lr=0.01                TrainConfig field (see archlab.train.config)
    --set data.seed=1                  option of archlab.data.load
    --set task.kind=binary             option of the task
    --set lr=0.01                      bare key: a TrainConfig field if one has that name, else a model field

A run file (``archlab train run.yaml``) has the same four sections; ``model``, ``data`` and
``task`` may also be plain names::

    model: cnn1d_mnist1d        # or {name: cnn1d_mnist1d, channels: 32, ...}
    data: mnist1d               # or {name: mnist1d, seed: 1}
    task: classification        # optional (default: the dataset's task)
    train: {lr: 0.01, batch_size: 100, max_steps: 6000, shuffle: false}

A run directory's own config.yaml is a valid run file too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from archlab.cli.main import app, console
from archlab.config import parse_override, set_dotted
from archlab.errors import ConfigError, DataError
from archlab.train.state import load_run


def _section(value: Any, what: str) -> tuple[str | None, dict[str, Any]]:
    """A run-file section as (name, options): ``"x"`` or ``{name: x, ...}`` or ``{name, config|options}``."""
    if value is None:
        return None, {}
    if isinstance(value, str):
        return value, {}
    if isinstance(value, dict):
        value = dict(value)
        name = value.pop("name", None)
        for nested in ("config", "options"):
            if isinstance(value.get(nested), dict) and len(value) == 1:
                value = value[nested]
        return name, value
    raise ConfigError(f"run file section {what!r} must be a name or a mapping; got {type(value).__name__}")


def _apply_sets(sets: list[str], spec: dict[str, dict[str, Any]]) -> None:
    from archlab.train.config import TrainConfig

    for item in sets:
        key, value = parse_override(item)
        head, _, rest = key.partition(".")
        if head in ("model", "train", "data", "task") and rest:
            set_dotted(spec[head], rest, value)
        elif key in TrainConfig.model_fields:
            spec["train"][key] = value
        else:
            set_dotted(spec["model"], key, value)


def _print_metrics(metrics: dict[str, Any], title: str) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    console.print(table)


@app.command("train")
def train_cmd(
    run_file: Optional[Path] = typer.Argument(None, help="A run YAML (model, data, task, train sections)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Registered model name."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Dataset name or path (archlab datasets)."),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Task (default: the dataset's)."),
    set_: list[str] = typer.Option([], "--set", "-s", help="model.KEY=V, train.KEY=V, data.KEY=V, task.KEY=V (repeatable)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this run directory exactly."),
    out_dir: Optional[str] = typer.Option(None, "--out-dir", help="Parent of run directories (default runs/)."),
    name: Optional[str] = typer.Option(None, "--name", help="Run directory name."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train a registry model on a dataset and write a run directory."""
    from archlab.train import fit, resume as resume_run

    if resume is not None:
        if run_file or model or data or set_:
            raise ConfigError("--resume continues a run with its saved config; give no run file, --model, --data or --set")
        result = resume_run(resume, quiet=quiet)
    else:
        spec: dict[str, dict[str, Any]] = {"model": {}, "train": {}, "data": {}, "task": {}}
        names: dict[str, str | None] = {"model": None, "data": None, "task": None}
        if run_file is not None:
            import yaml

            if not run_file.is_file():
                raise ConfigError(f"run file {run_file} does not exist")
            doc = yaml.safe_load(run_file.read_text(encoding="utf-8")) or {}
            if not isinstance(doc, dict):
                raise ConfigError(f"{run_file}: expected a mapping with model/data/task/train; got {type(doc).__name__}")
            unknown = sorted(set(doc) - {"model", "data", "task", "train"})
            if unknown:
                raise ConfigError(f"{run_file}: unknown sections {unknown}; allowed: model, data, task, train")
            for sec in ("model", "data", "task"):
                names[sec], spec[sec] = _section(doc.get(sec), sec)
            spec["train"] = dict(doc.get("train") or {})
        names["model"] = model or names["model"]
        names["data"] = data or names["data"]
        names["task"] = task or names["task"]
        _apply_sets(set_, spec)
        if not names["model"] or not names["data"]:
            raise ConfigError("train needs a model and a dataset: --model NAME --data NAME, or a run file")
        if quiet:
            spec["train"]["quiet"] = True
        if out_dir:
            spec["train"]["out_dir"] = out_dir
        if name:
            spec["train"]["run_name"] = name
        from archlab.data import load

        bundle = load(names["data"], **spec["data"])
        result = fit(names["model"], bundle, names["task"], task_options=spec["task"], model_overrides=spec["model"],
                     data_spec={"name": names["data"], "options": spec["data"]}, **spec["train"])
    shown = {k: v for k, v in result.metrics.items() if k.startswith(("val_", "test_"))}
    _print_metrics(shown, f"{getattr(result.model, 'registry_name', 'model')}: final metrics ({result.metrics['weights']} weights)")
    console.print(f"steps: {result.steps}  precision: {result.metrics['precision']}  "
                  f"train time: {result.metrics['train_time_s']:.1f}s" + ("  (stopped early)" if result.stopped_early else ""))
    console.print(f"run directory: [bold]{result.run_dir}[/]")


@app.command("evaluate")
def evaluate_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Dataset name or path (default: the run's)."),
    split: list[str] = typer.Option([], "--split", help="Splits to evaluate (default: val and test)."),
) -> None:
    """Evaluate a run's best (else last) checkpoint on a dataset's splits."""
    import torch

    from archlab.data import load
    from archlab.train.config import TrainConfig
    from archlab.train.evaluate import evaluate_split

    saved, model, task, ckpt = load_run(run_dir)
    spec = saved.get("data") or {}
    bundle = load(data or spec["name"], **({} if data else spec.get("options") or {}))
    cfg = TrainConfig.build({**saved["train"], "quiet": True})
    device = torch.device("cpu")
    task.setup(bundle, cfg, device)
    splits = bundle.splits()
    wanted = split or [s for s in ("val", "test") if s in splits] or ["train"]
    missing = [s for s in wanted if s not in splits]
    if missing:
        raise DataError(f"dataset {bundle.name!r} has no split(s) {missing}; it has {sorted(splits)}")
    metrics: dict[str, Any] = {}
    for s in wanted:
        metrics.update(evaluate_split(model, task, splits[s], batch_size=cfg.eval_batch_size or 512, device=device, prefix=s))
    _print_metrics(metrics, f"{saved['model']['name']} ({ckpt.name}) on {bundle.name}")


@app.command("predict")
def predict_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory."),
    input_: str = typer.Argument(..., metavar="INPUT", help="An .npy file of model inputs, or a split name of the run's dataset (train/val/test)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write predictions to this .npy file."),
) -> None:
    """Predict with a run's best (else last) checkpoint. An .npy input must already be in the
    model's input format (normalised like the training data, see the run's data_info.json)."""
    import numpy as np
    import torch

    from archlab.data import load
    from archlab.io import atomic_write_bytes
    from archlab.train.evaluate import predict_split

    saved, model, task, ckpt = load_run(run_dir)
    if input_.endswith(".npy"):
        path = Path(input_)
        if not path.is_file():
            raise DataError(f"input file {path} does not exist")
        arr = np.load(path, allow_pickle=False)
        x = torch.from_numpy(arr)
        x = x.float() if x.is_floating_point() else x.long()
        inputs = (x,)
    else:
        spec = saved.get("data") or {}
        bundle = load(spec["name"], **(spec.get("options") or {}))
        splits = bundle.splits()
        if input_ not in splits:
            raise DataError(f"INPUT {input_!r} is neither an .npy file nor a split of {bundle.name!r} ({sorted(splits)})")
        inputs = splits[input_].inputs
    preds = predict_split(model, task, inputs, batch_size=512, device=torch.device("cpu"))
    if output is not None:
        import io

        buf = io.BytesIO()
        np.save(buf, preds.numpy(), allow_pickle=False)
        atomic_write_bytes(output, buf.getvalue())
        console.print(f"wrote {tuple(preds.shape)} predictions to {output}")
    else:
        console.print(f"{tuple(preds.shape)} predictions; first ones: {preds.reshape(len(preds), -1)[:10, 0].tolist()}")
