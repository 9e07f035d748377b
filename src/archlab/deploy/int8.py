"""int8 ONNX: ONNX Runtime's quantizers, and for PyTorch torchao's
``Int8DynamicActivationInt8WeightConfig`` where torchao imports.

With a run directory several int8 recipes are tried and the fastest whose test metric stays within
one point of fp32 is kept (int8 ONNX vs fp32 ONNX on the run's test split, falling back to val):

- ``dynamic``: ``quantize_dynamic`` (int8 weights, activations quantized per call);
- ``fused+dynamic`` / ``fused+dynamic per-channel``: first ONNX Runtime's transformer graph
  optimiser (``onnxruntime.transformers.optimizer``: attention, LayerNorm / SkipLayerNorm and GELU
  fusion), then dynamic int8 - tried on models with attention (Softmax beside LayerNormalization);
- ``static QDQ per-channel``: ``quantize_static`` with QuantizeLinear / DequantizeLinear pairs,
  activation ranges calibrated on training samples (MinMax).

Without a run directory there is no metric to weigh, and ``dynamic`` is written.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archlab.bench.backends import ort_session, quantize_onnx
from archlab.bench.source import Source
from archlab.errors import MissingExtraError

log = logging.getLogger(__name__)


class OrtModule(nn.Module):
    """An ONNX file behind an ``nn.Module`` interface (torch in, torch out), so archlab's tasks
    and evaluation run it like the eager model."""

    def __init__(self, path: str | Path, names: list[str], threads: int = 1):
        super().__init__()
        self.session = ort_session(str(path), threads, cuda=False)
        self.names = names
        self.wanted = {i.name for i in self.session.get_inputs()}

    def forward(self, *args: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        values = list(args) + [v for v in kwargs.values() if isinstance(v, torch.Tensor)]
        feed = {n: v.detach().cpu().numpy() for n, v in zip(self.names, values) if n in self.wanted}
        outs = [torch.from_numpy(o) for o in self.session.run(None, feed)]
        return outs[0] if len(outs) == 1 else tuple(outs)


def add_int8(
    result: Any, source: Source, fp32_path: Path, names: list[str], verify: Callable, runner: Callable
) -> None:
    """Write ``model.int8.onnx`` beside ``fp32_path``, verify it (int8 tolerance, not fatal) and,
    for a run directory, choose among the recipes by test metric and speed (:func:`choose_int8`)."""
    q8 = fp32_path.with_name("model.int8.onnx")
    choice = None
    if source.run_dir is not None:
        try:
            choice = _choose_for_run(source, fp32_path, q8, names)
        except Exception as exc:  # plain dynamic int8 stands; say why in the log
            log.warning("int8 recipes not compared for %s: %s", source.name, exc)
    if choice is None:
        quantize_onnx(fp32_path, q8)
    else:
        result.int8_choice = choice.to_dict()
        result.int8_metric = choice.metric_delta()
    result.int8_file, result.int8_size_bytes = q8.name, q8.stat().st_size
    result.verification += verify(source, "int8", runner(q8, names), kind="int8")


def _split_scores(bundle: Any, task: Any, path: Path, names: list[str]) -> dict[str, float]:
    from archlab.train.evaluate import evaluate_split

    split_name = "test" if bundle.test is not None else "val"
    split = bundle.test if bundle.test is not None else bundle.val
    if split is None:
        raise ValueError(f"{bundle.name} has no test or val split")
    model = OrtModule(path, names)
    return evaluate_split(model, task, split, batch_size=256, device=torch.device("cpu"), prefix=split_name)


def _choose_for_run(source: Source, fp32: Path, dst: Path, names: list[str]) -> Int8Choice:
    """:func:`choose_int8` with the run's test metric and its training samples for calibration."""
    bundle, task, _ = _run_task(source)
    fp32_scores = _split_scores(bundle, task, fp32, names)
    split_name = "test" if bundle.test is not None else "val"
    metric = next((k for k in fp32_scores if not k.endswith("_loss")), f"{split_name}_loss")
    calibration = None
    if bundle.train is not None and bundle.train.indexable:
        rows = bundle.train.take(torch.arange(min(64, len(bundle.train))))
        calibration = [{n: t[i : i + 1].numpy() for n, t in zip(names, rows.inputs)} for i in range(len(rows))]
    args, kwargs = source.inputs(1)
    values = list(args) + [v for v in kwargs.values() if isinstance(v, torch.Tensor)]
    cfg = getattr(source.module, "config", None)
    return choose_int8(
        fp32,
        dst,
        feed={n: v.numpy() for n, v in zip(names, values)},
        metric=lambda path: _split_scores(bundle, task, path, names)[metric],
        metric_name=metric,
        calibration=calibration,
        num_heads=int(getattr(cfg, "n_heads", 0) or 0),
        hidden_size=int(getattr(cfg, "d_model", 0) or 0),
    )


def _run_task(source: Source) -> tuple[Any, Any, Any]:
    """The run's data bundle and its task, set up as in training."""
    from archlab.data import load
    from archlab.rundir import RunDir
    from archlab.tasks import get_task
    from archlab.train.config import TrainConfig

    saved = RunDir(source.run_dir).read_config()
    spec = saved.get("data") or {}
    bundle = load(spec["name"], **(spec.get("options") or {}))
    task_saved = saved.get("task") or {}
    task = get_task(task_saved.get("name"), **(task_saved.get("options") or {}))
    train_cfg = {k: v for k, v in (saved.get("train") or {}).items() if k in TrainConfig.model_fields}
    task.setup(bundle, TrainConfig.build(train_cfg), torch.device("cpu"))
    return bundle, task, saved


def metric_delta(source: Source, fp32: Path, int8: Path, names: list[str]) -> dict[str, float]:
    """Test metrics of the fp32 and int8 ONNX models on the run's test (else val) split.

    Returns:
        ``{"split", "metric", "fp32", "int8", "delta"}`` with delta = int8 - fp32 for the task's
        first metric (e.g. accuracy), and the loss pair.
    """
    bundle, task, _ = _run_task(source)
    scores = {label: _split_scores(bundle, task, path, names) for label, path in (("fp32", fp32), ("int8", int8))}
    split_name = "test" if bundle.test is not None else "val"
    metric = next((k for k in scores["fp32"] if not k.endswith("_loss")), f"{split_name}_loss")
    return {
        "split": split_name,
        "metric": metric,
        "fp32": scores["fp32"][metric],
        "int8": scores["int8"][metric],
        "delta": scores["int8"][metric] - scores["fp32"][metric],
        "fp32_loss": scores["fp32"][f"{split_name}_loss"],
        "int8_loss": scores["int8"][f"{split_name}_loss"],
    }


def torchao_available() -> tuple[bool, str]:
    """(whether torchao's int8 quantization imports beside this torch, the reason if not)."""
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_  # noqa: F401
    except Exception as exc:  # ImportError, or a binary built for another torch
        return False, f"torchao does not import beside torch {torch.__version__}: {type(exc).__name__}: {exc}"
    return True, ""


def torch_int8(module: nn.Module) -> nn.Module:
    """A dynamic-int8 copy of ``module`` (Linear layers) with torchao.

    Raises:
        MissingExtraError: torchao is missing or does not import beside this torch.
    """
    ok, why = torchao_available()
    if not ok:
        raise MissingExtraError(f"PyTorch int8 needs torchao: {why}; use ONNX int8 (archlab export --int8)")
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    model = copy.deepcopy(module).eval()
    quantize_(model, Int8DynamicActivationInt8WeightConfig())
    return model


# ---------------------------------------------------------------------------------------------
# int8 recipes and the choice among them

RECIPES = ("dynamic", "fused+dynamic", "fused+dynamic per-channel", "static QDQ per-channel")


@dataclass
class Int8Candidate:
    """One int8 recipe as measured: batch-1 latency with 1 thread, file size, metric."""

    recipe: str
    size_bytes: int | None = None
    p50_ms: float | None = None
    metric: float | None = None
    fused: dict[str, int] | None = None
    error: str | None = None


@dataclass
class Int8Choice:
    """The int8 recipes tried on one model and the one kept (fastest within ``tolerance`` of fp32)."""

    metric_name: str | None
    fp32_metric: float | None
    fp32_p50_ms: float
    fp32_size_bytes: int
    candidates: list[Int8Candidate]
    chosen: str
    why: str
    tolerance: float = 0.01

    def chosen_candidate(self) -> Int8Candidate:
        return next(c for c in self.candidates if c.recipe == self.chosen)

    def metric_delta(self) -> dict[str, Any] | None:
        """``{"split", "metric", "fp32", "int8", "delta", "recipe"}`` for the kept file."""
        c = self.chosen_candidate()
        if self.metric_name is None or c.metric is None or self.fp32_metric is None:
            return None
        return {
            "split": self.metric_name.split("_")[0],
            "metric": self.metric_name,
            "fp32": self.fp32_metric,
            "int8": c.metric,
            "delta": c.metric - self.fp32_metric,
            "recipe": self.chosen,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": 1, **asdict(self)}


def has_attention(path: Path) -> bool:
    """Whether an ONNX graph looks like a transformer (Softmax beside LayerNormalization)."""
    import onnx

    ops = {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
    return "Softmax" in ops and bool(ops & {"LayerNormalization", "ReduceMean"})


def fuse_transformer(src: Path, dst: Path, num_heads: int = 0, hidden_size: int = 0) -> dict[str, int]:
    """ONNX Runtime's transformer optimiser (attention, SkipLayerNorm / LayerNorm, GELU fusion).

    Returns:
        The fused operators and their counts (those found in this graph).
    """
    from onnxruntime.transformers.optimizer import optimize_model

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    opt = optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=1)
    opt.save_model_to_file(str(dst))
    return {k: int(v) for k, v in (opt.get_fused_operator_statistics() or {}).items() if v}


def int8_recipe(
    recipe: str,
    fp32: Path,
    dst: Path,
    *,
    calibration: list[dict[str, Any]] | None = None,
    num_heads: int = 0,
    hidden_size: int = 0,
) -> dict[str, int] | None:
    """Write ``dst`` with one of :data:`RECIPES`; returns the fused operators for the fused ones."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if recipe == "dynamic":
        quantize_onnx(fp32, dst)
        return None
    fused, src = None, fp32
    work = dst.with_name(dst.stem + ".work.onnx")
    quiet = _PerChannelNoise()
    logging.getLogger().addFilter(quiet)  # ONNX Runtime's quantizer warns on the root logger
    try:
        if recipe.startswith("fused"):
            fused = fuse_transformer(fp32, work, num_heads, hidden_size)
            src = work
        pre = dst.with_name(dst.stem + ".pre.onnx")
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            src = pre
        except Exception:  # an optimisation only; quantize the graph as it is
            pass
        if recipe.startswith("static"):
            if not calibration:
                raise ValueError("static quantization needs calibration samples (a run's training split)")

            class Reader(CalibrationDataReader):  # the calibration feeds, one get_next() at a time
                def __init__(self) -> None:
                    self._it = iter(calibration)

                def get_next(self) -> dict[str, Any] | None:
                    return next(self._it, None)

            reader = Reader()
            quantize_static(
                str(src),
                str(dst),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
            )
        else:
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel="per-channel" in recipe)
    finally:
        logging.getLogger().removeFilter(quiet)
        for tmp in (work, dst.with_name(dst.stem + ".pre.onnx")):
            tmp.unlink(missing_ok=True)
    return fused


class _PerChannelNoise(logging.Filter):
    """Drops ONNX Runtime's "Axis 1 is out-of-range for weight ... with rank 1": per-channel
    quantization skips 1-D weights (biases, norms), as intended, with one warning each."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is out-of-range for weight" not in record.getMessage()


def _p50_ms(paths: dict[str, Path], feed: dict[str, Any], min_time_s: float, rounds: int = 3) -> dict[str, float]:
    """Batch-1, 1-thread p50 of each file; rounds interleave the files so a load spike from other
    processes hits them alike, and the best round counts."""
    from archlab.bench.timing import measure

    sessions = {k: ort_session(str(p), 1, cuda=False) for k, p in paths.items()}
    feeds = {k: {i.name: feed[i.name] for i in s.get_inputs()} for k, s in sessions.items()}
    best: dict[str, float] = {}
    for _ in range(rounds):
        for k, s in sessions.items():
            t = measure(lambda s=s, f=feeds[k]: s.run(None, f), min_time_s=min_time_s / rounds).p(50) * 1e3
            best[k] = min(best.get(k, t), t)
    return best


def choose_int8(
    fp32: Path,
    dst: Path,
    *,
    feed: dict[str, Any],
    metric: Callable[[Path], float] | None = None,
    metric_name: str | None = None,
    calibration: list[dict[str, Any]] | None = None,
    num_heads: int = 0,
    hidden_size: int = 0,
    recipes: tuple[str, ...] = RECIPES,
    tolerance: float = 0.01,
    min_time_s: float = 1.5,
) -> Int8Choice:
    """Try int8 recipes and keep the fastest whose metric stays within ``tolerance`` of fp32.

    Args:
        fp32: the fp32 ONNX file.
        dst: where the kept int8 file goes.
        feed: one batch-1 input by name, for the latency.
        metric: ``path -> score`` (e.g. test accuracy); higher is better unless ``metric_name``
            ends in ``_loss``, where ``tolerance`` is relative. None: fastest wins.
        metric_name: what ``metric`` measures.
        calibration: feeds of training samples for static quantization (skipped without).
        num_heads, hidden_size: for the attention fusion (0: read from the graph).
        recipes: which of :data:`RECIPES` to try; the fused ones only on graphs with attention.
        tolerance: largest metric loss kept (0.01 = one point of accuracy).
        min_time_s: timing per file.
    """
    if not has_attention(fp32):
        recipes = tuple(r for r in recipes if not r.startswith("fused"))
    if not calibration:
        recipes = tuple(r for r in recipes if not r.startswith("static"))
    files: dict[str, Path] = {}
    cands: dict[str, Int8Candidate] = {}
    for i, recipe in enumerate(recipes):
        path = dst.with_name(f"{dst.stem}.candidate{i}.onnx")
        c = cands[recipe] = Int8Candidate(recipe)
        try:
            c.fused = int8_recipe(
                recipe, fp32, path, calibration=calibration, num_heads=num_heads, hidden_size=hidden_size
            )
            c.size_bytes, files[recipe] = path.stat().st_size, path
        except Exception as exc:  # one recipe failing leaves the others
            c.error = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    times = _p50_ms({"fp32": fp32, **files}, feed, min_time_s)
    fp32_metric = metric(fp32) if metric else None
    lower = bool(metric_name and metric_name.endswith("_loss"))
    for recipe, path in files.items():
        cands[recipe].p50_ms = times[recipe]
        cands[recipe].metric = metric(path) if metric else None

    def within(c: Int8Candidate) -> bool:
        if c.metric is None or fp32_metric is None:
            return metric is None
        return c.metric <= fp32_metric * (1 + tolerance) if lower else c.metric >= fp32_metric - tolerance

    kept = [c for c in cands.values() if c.error is None and within(c)]
    if kept:
        best = min(kept, key=lambda c: c.p50_ms or float("inf"))
        why = (
            f"fastest of {len(kept)} recipe(s) within {tolerance:g} of fp32" if metric else "fastest (no metric given)"
        )
    else:  # nothing keeps the metric: the least lossy one, said so
        ok = [c for c in cands.values() if c.error is None]
        best = max(ok, key=lambda c: -(c.metric or 0) if lower else (c.metric or 0))
        why = f"no recipe stays within {tolerance:g} of fp32; kept the least lossy"
    files[best.recipe].replace(dst)
    for path in files.values():
        path.unlink(missing_ok=True)
    return Int8Choice(
        metric_name, fp32_metric, times["fp32"], fp32.stat().st_size, list(cands.values()), best.recipe, why, tolerance
    )
