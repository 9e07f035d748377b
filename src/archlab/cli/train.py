"""``archlab train``, ``archlab evaluate RUN_DIR`` and ``archlab predict RUN_DIR INPUT``.

The run file and ``--set`` scheme are :class:`archlab.runs.RunSpec`'s (see :mod:`archlab.runs.spec`).
``archlab train ... --nproc N`` runs the same command on N processes through torchrun
(:mod:`archlab.runs.launch`); under torchrun only rank 0 shows progress and the final table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from archlab.cli.app import app, console, err_console, say_weights
from archlab.errors import ConfigError

_STRICT_HELP = (
    "Fail when the run's final checkpoint is unusable (corrupt), instead of answering with an older "
    "one that verifies (flagged on the first line)."
)


def _print_metrics(metrics: dict[str, Any], title: str) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    console.print(table)


@app.command("train")
def train_cmd(
    ctx: typer.Context,
    run_file: Optional[Path] = typer.Argument(None, help="A run YAML (model, data, task, train sections)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Registered model name."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Dataset name or path (archlab datasets)."),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Task (default: the dataset's)."),
    set_: list[str] = typer.Option(
        [], "--set", "-s", help="model.KEY=V, train.KEY=V, data.KEY=V, task.KEY=V (repeatable)."
    ),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this run directory exactly."),
    out_dir: Optional[str] = typer.Option(None, "--out-dir", help="Parent of run directories (default runs/)."),
    name: Optional[str] = typer.Option(None, "--name", help="Run directory name."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also write TensorBoard logs (needs tensorboard)."),
    track: Optional[str] = typer.Option(
        None,
        "--track",
        help="Mirror the run to MLflow: mlflow, mlflow:URI, or none (default: MLflow if ARCHLAB_TRACKING_URI is set).",
    ),
    cv: Optional[int] = typer.Option(
        None, "--cv", help="K-fold cross-validation on the training split (one run per fold)."
    ),
    cv_split: str = typer.Option(
        "auto",
        "--cv-split",
        help="With --cv: auto (forward-chaining for forecasting / time-ordered data, else shuffled), "
        "shuffled or forward.",
    ),
    seeds: Optional[int] = typer.Option(
        None, "--seeds", help="Train N times with seeds seed..seed+N-1; report mean ± std."
    ),
    nproc: Optional[int] = typer.Option(
        None, "--nproc", help="Train on N processes of this machine (data-parallel, through torchrun)."
    ),
    max_restarts: Optional[int] = typer.Option(
        None, "--max-restarts", help="With --nproc: after a worker fails, restart all up to K times; the run resumes."
    ),
) -> None:
    """Train a registry model on a dataset and write a run directory (or a group of them)."""
    from archlab.cli.progress import ProgressBar
    from archlab.runs import launch
    from archlab.train import distributed

    opts = _TrainOptions(**ctx.params)  # every option above, by its parameter name
    launch.check_counts(nproc, max_restarts)
    if nproc is not None and (cv is not None or seeds is not None):
        raise ConfigError("--nproc trains one run on several processes; --cv / --seeds train a group: give one of them")
    rank = launch.worker_rank()
    reporter = None if quiet or rank != 0 else ProgressBar()
    with launch.worker_errors():  # under torchrun: the launcher names this worker's error
        _check_group_options(opts)
        result = _resume(ctx, opts, reporter) if resume is not None else _train_new(ctx, opts, reporter)
    if result is None:  # launched on N processes, or a group (its table is shown)
        return
    # under torchrun: every rank is done before any leaves the group (a no-op otherwise)
    distributed.current().barrier()
    distributed.shutdown()
    if rank == 0:  # under torchrun, rank 0 shows the result
        _show_result(result)


@dataclass(frozen=True)
class _TrainOptions:
    """``archlab train``'s options, as typer parsed them (see :func:`train_cmd`)."""

    run_file: Path | None
    model: str | None
    data: str | None
    task: str | None
    set_: list[str]
    resume: Path | None
    out_dir: str | None
    name: str | None
    quiet: bool
    tensorboard: bool
    track: str | None
    cv: int | None
    cv_split: str
    seeds: int | None
    nproc: int | None
    max_restarts: int | None

    def output_flags(self) -> list[str]:
        """The flags that shape how a run reports, for the command run again on N processes."""
        argv = (["--quiet"] if self.quiet else []) + (["--tensorboard"] if self.tensorboard else [])
        return argv + (["--track", self.track] if self.track else [])


def _check_group_options(o: _TrainOptions) -> None:
    """A group (``--cv`` / ``--seeds``) is one of them, and is continued by running it again."""
    if o.cv is not None and o.seeds is not None:
        raise ConfigError("--cv and --seeds each train a group of runs; give one of them")
    if o.resume is not None and (o.cv is not None or o.seeds is not None):
        raise ConfigError("--resume continues one run; to continue a --cv / --seeds group, run the same command again")


def _resume(ctx: typer.Context, o: _TrainOptions, reporter) -> Any:
    """``--resume RUN_DIR``: the run continued here, or on ``--nproc`` processes (then None)."""
    from archlab.runs import resume, training

    if o.run_file or o.model or o.data or o.set_:
        raise ConfigError("--resume continues a run with its saved config; give no run file, --model, --data or --set")
    # a finished run is not launched on N processes: resume answers it without writing
    if o.nproc is not None and training.finished(o.resume) is None:
        _launch(ctx, o.nproc, o.max_restarts, ["train", "--resume", str(o.resume)] + o.output_flags())
        return None
    return resume(o.resume, reporter=reporter, tensorboard=o.tensorboard, track=o.track)


def _train_new(ctx: typer.Context, o: _TrainOptions, reporter) -> Any:
    """A new run from the run file, flags and ``--set``: trained here, on ``--nproc`` processes,
    or as a ``--cv`` / ``--seeds`` group (the last two return None)."""
    from archlab.runs import RunSpec, fit

    spec = RunSpec.from_file(o.run_file) if o.run_file is not None else RunSpec()
    spec.model.name = o.model or spec.model.name
    spec.data.name = o.data or spec.data.name
    spec.task.name = o.task or spec.task.name
    spec = spec.with_sets(o.set_)
    if not spec.model.name or not spec.data.name:
        raise ConfigError("train needs a model and a dataset: --model NAME --data NAME, or a run file")
    if o.cv is not None or o.seeds is not None:
        _train_group(spec, o.cv, o.seeds, o.out_dir or spec.run.out_dir, o.name or spec.run.name, reporter, o.cv_split)
        return None
    if o.nproc is not None:
        _launch_new(ctx, o, spec)
        return None
    return fit(
        spec.model.name,
        spec.data.name,
        spec.task.name,
        task_options=spec.task.options,
        model_overrides=spec.model.options,
        data_spec={"name": spec.data.name, "options": spec.data.options},
        out_dir=o.out_dir or spec.run.out_dir,
        run_name=o.name or spec.run.name,
        tensorboard=o.tensorboard or spec.run.tensorboard,
        track=o.track or spec.run.track,
        reporter=reporter,
        **spec.train,
    )


def _launch_new(ctx: typer.Context, o: _TrainOptions, spec) -> None:
    """The same command on ``--nproc`` processes, its run named now: a restarted worker finds
    the run by this name."""
    from archlab.runs.training import default_run_name

    name = o.name or spec.run.name or default_run_name(spec.model.name, spec.data.name)
    argv = ["train"] + ([str(o.run_file)] if o.run_file is not None else [])
    for flag, value in (("--model", o.model), ("--data", o.data), ("--task", o.task), ("--out-dir", o.out_dir)):
        argv += [flag, value] if value else []
    argv += [a for s in o.set_ for a in ("--set", s)] + ["--name", name]
    _launch(ctx, o.nproc, o.max_restarts, argv + o.output_flags())


def _launch(ctx: typer.Context, nproc: int, max_restarts: int | None, argv: list[str]) -> None:
    """This command, less --nproc, on ``nproc`` processes; a worker's failure is one line and its exit status."""
    import logging

    from archlab.runs import launch

    top: list[str] = []
    for plugin in ctx.find_root().params.get("plugin") or []:
        top += ["--plugin", plugin]
    if logging.getLogger("archlab").isEnabledFor(logging.DEBUG):
        top.append("--debug")
    try:
        launch.launch(nproc, top + argv, max_restarts or 0)
    except launch.LaunchError as exc:
        err_console.print(f"[bold red]LaunchError:[/] {exc}", highlight=False, markup=True)
        raise SystemExit(exc.exit_code) from None  # typer.Exit would be lost: main() runs app in non-standalone mode


def _show_result(result) -> None:
    shown = {k: v for k, v in result.metrics.items() if k.startswith(("val_", "test_"))}
    _print_metrics(
        shown, f"{getattr(result.model, 'registry_name', 'model')}: final metrics ({result.metrics['weights']} weights)"
    )
    console.print(
        f"steps: {result.steps}  precision: {result.metrics['precision']}  "
        f"train time: {result.metrics['train_time_s']:.1f}s" + ("  (stopped early)" if result.stopped_early else "")
    )
    console.print(f"run directory: [bold]{result.run_dir}[/]")


def _train_group(
    spec, cv: int | None, seeds: int | None, out_dir: str, name: str | None, reporter, cv_split: str = "auto"
) -> None:
    """``--cv K`` / ``--seeds N``: a group of runs under one directory, summarised with spreads."""
    from archlab.runs.cv import cross_validate
    from archlab.runs.seeds import repeat_seeds

    common = dict(
        task_options=spec.task.options,
        model_overrides=spec.model.options,
        data_options=spec.data.options,
        out_dir=out_dir,
        run_name=name,
        reporter=reporter,
    )
    train = dict(spec.train)
    if cv is not None:
        result = cross_validate(
            spec.model.name,
            spec.data.name,
            spec.task.name,
            k=cv,
            seed=train.pop("seed", 0),
            split=cv_split,
            **common,
            **train,
        )
        title = f"{spec.model.name}: {cv}-fold {result.split} cross-validation"
    else:
        result = repeat_seeds(
            spec.model.name, spec.data.name, seeds, spec.task.name, base_seed=train.pop("seed", 0), **common, **train
        )
        title = f"{spec.model.name}: {seeds} seeds"
    table = Table(title=title + " (mean ± std, 95% interval)")
    for col in ("metric", "mean ± std", "95% interval"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for metric, s in result.summary.items():
        if metric.startswith(("val_", "test_")):
            table.add_row(metric, f"{s['mean']:.4f} ± {s['std']:.4f}", f"[{s['ci95_low']:.4f}, {s['ci95_high']:.4f}]")
    console.print(table)
    console.print(f"group directory: [bold]{result.run_dir}[/]")


@app.command("evaluate")
def evaluate_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory."),
    data: Optional[str] = typer.Option(
        None,
        "--data",
        "-d",
        help="Dataset name (default: the run's), or a file with targets (CSV with the target column, "
        "image folder of class subfolders, text) read with the run's preprocessing.",
    ),
    split: list[str] = typer.Option([], "--split", help="Splits to evaluate (default: val and test)."),
    strict: bool = typer.Option(False, "--strict", help=_STRICT_HELP),
) -> None:
    """Evaluate a run's final weights on a dataset's splits, or on a file of new labelled data.
    The first line says which checkpoint answered (a fallback is flagged, with why)."""
    from archlab.runs import evaluate

    result = evaluate(run_dir, data, split or None, strict=strict)
    say_weights(result.weights)
    _print_metrics(dict(result), f"{run_dir} on {data or 'its dataset'}")


@app.command("predict")
def predict_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory, or an export folder (archlab export)."),
    input_: str = typer.Argument(
        ...,
        metavar="INPUT",
        help="Raw data as the user has it: an .npy of raw values, CSV rows (training columns), an image "
        "file or folder, a text file; or a split name of the run's dataset (train/val/test).",
    ),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Write the predictions to this .csv, .json or .npy file."
    ),
    strict: bool = typer.Option(False, "--strict", help=_STRICT_HELP),
) -> None:
    """Predict with a run's final weights, or with an exported model (ONNX Runtime, no torch).
    INPUT goes through the run's recorded preprocessing (scaling, normalisation, categories,
    image size, vocabulary), the same steps its training data went through. For a run, the
    first line says which checkpoint answered (a fallback is flagged, with why)."""
    if (run_dir / "preprocessing.json").is_file():  # an export folder
        from archlab.deploy.serve import predict_file

        out = predict_file(run_dir, input_, output)
        first = f"; argmax of the first rows: {out.argmax(axis=1)[:10].tolist()}" if out.ndim == 2 else ""
        written = f"; wrote {output}" if output is not None else ""
        console.print(f"{tuple(out.shape)} outputs (the exported model's raw output){first}{written}")
        return
    from rich.table import Table

    from archlab.runs.use import predict_run, run_preprocessing, save_predictions

    result = predict_run(run_dir, input_, strict=strict)
    say_weights(result.weights)
    preds = result.values
    readable = run_preprocessing(run_dir).readable(preds.numpy())
    n = len(readable)
    console.print(f"{n} prediction{'s' if n != 1 else ''}" + (", the first 10:" if n > 10 else ":"))
    table = Table()
    table.add_column("row", justify="right")
    table.add_column("prediction")
    for i, value in enumerate(readable[:10]):
        table.add_row(str(i), str(value)[:80])
    console.print(table)
    if output is not None:
        save_predictions(output, preds, readable)
        console.print(f"wrote {tuple(preds.shape)} predictions to {output}")
