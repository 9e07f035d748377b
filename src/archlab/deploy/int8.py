"""Dynamic int8: ONNX Runtime's ``quantize_dynamic`` (int8 weights, activations quantized per
call) and, for PyTorch, torchao's ``Int8DynamicActivationInt8WeightConfig`` where torchao imports.

With a run directory the change of the test metric is measured (int8 ONNX vs fp32 ONNX on the
run's test split, falling back to val), so the size and speed gain is weighed against accuracy.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
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
    for a run directory, measure the test-metric change."""
    q8 = quantize_onnx(fp32_path, fp32_path.with_name("model.int8.onnx"))
    result.int8_file, result.int8_size_bytes = q8.name, q8.stat().st_size
    result.verification += verify(source, "int8", runner(q8, names), kind="int8")
    if source.run_dir is not None:
        try:
            result.int8_metric = metric_delta(source, fp32_path, q8, names)
        except Exception as exc:  # the export stands without it; say why in the log
            log.warning("int8 metric delta not measured for %s: %s", source.name, exc)


def metric_delta(source: Source, fp32: Path, int8: Path, names: list[str]) -> dict[str, float]:
    """Test metrics of the fp32 and int8 ONNX models on the run's test (else val) split.

    Returns:
        ``{"split", "metric", "fp32", "int8", "delta"}`` with delta = int8 - fp32 for the task's
        first metric (e.g. accuracy), and the loss pair.
    """
    from archlab.data import load
    from archlab.rundir import RunDir
    from archlab.tasks import get_task
    from archlab.train.config import TrainConfig
    from archlab.train.evaluate import evaluate_split

    saved = RunDir(source.run_dir).read_config()
    spec = saved.get("data") or {}
    bundle = load(spec["name"], **(spec.get("options") or {}))
    task_saved = saved.get("task") or {}
    task = get_task(task_saved.get("name"), **(task_saved.get("options") or {}))
    train_cfg = {k: v for k, v in (saved.get("train") or {}).items() if k in TrainConfig.model_fields}
    cfg = TrainConfig.build(train_cfg)
    device = torch.device("cpu")
    task.setup(bundle, cfg, device)
    split_name = "test" if bundle.test is not None else "val"
    split = bundle.test if bundle.test is not None else bundle.val
    if split is None:
        raise ValueError(f"{bundle.name} has no test or val split")
    scores = {}
    for label, path in (("fp32", fp32), ("int8", int8)):
        scores[label] = evaluate_split(
            OrtModule(path, names), task, split, batch_size=256, device=device, prefix=split_name
        )
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
