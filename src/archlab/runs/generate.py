"""Generate from a trained run: text from language models, samples from VAEs, GANs, diffusion
models and flows. :func:`generate_from_run` returns what :func:`write_generated` renders
(``.txt`` for text, ``.png`` image grids or 2-D scatter / density plots for samples).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archlab.errors import ConfigError
from archlab.rundir import RunDir
from archlab.runs.use import load_run, saved_train

GENERATIVE = ("language_modeling", "vae", "gan", "diffusion", "flow")


@dataclass
class Generated:
    """Output of :func:`generate_from_run`: ``text`` for LMs, else ``samples`` (data layout)."""

    kind: str  # "text" | "images" | "points" | "vectors"
    task: str
    model_name: str
    text: str | None = None
    samples: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    model: nn.Module | None = None
    task_obj: Any = None
    real: torch.Tensor | None = None


def generate_from_run(
    run_dir: str | Path,
    n: int = 64,
    *,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
    prompt: str = "\n",
    temperature: float = 1.0,
    top_k: int | None = None,
    device: str = "cpu",
) -> Generated:
    """Text (``n`` characters) or ``n`` samples from the run in ``run_dir``.

    Args:
        steps: diffusion: DDIM steps (None = the full DDPM chain).
        guidance: diffusion: classifier-free guidance weight (class-conditional models).
        prompt, temperature, top_k: language models.
    """
    if n < 1:
        raise ConfigError(f"n={n} must be >= 1")
    saved, model, task, _ = load_run(run_dir, device)
    task_name = saved["task"]["name"]
    model_name = saved["model"]["name"]
    if task_name not in GENERATIVE:
        raise ConfigError(f"{run_dir} trained a {task_name!r} model; generate works for {', '.join(GENERATIVE)}")
    if task_name == "language_modeling":
        from archlab.tasks.language_model import sample_text

        info = json.loads(RunDir(run_dir).data_info_path.read_text(encoding="utf-8"))
        vocab = info.get("vocab")
        if not vocab:
            raise ConfigError(f"{run_dir}/{RunDir.DATA_INFO} has no vocab to decode generated tokens with")
        text = sample_text(model, vocab, prompt=prompt, n=n, temperature=temperature, top_k=top_k, seed=seed)
        return Generated(kind="text", task=task_name, model_name=model_name, text=text, model=model)
    if steps is not None and task_name != "diffusion":
        raise ConfigError(f"--steps applies to diffusion models; this run is {task_name!r}")
    if guidance is not None and task_name != "diffusion":
        raise ConfigError(f"--guidance applies to class-conditional diffusion models; this run is {task_name!r}")
    from archlab.data import load
    from archlab.train.config import TrainConfig

    spec = saved.get("data") or {}
    bundle = load(spec["name"], **(spec.get("options") or {}))
    task.setup(bundle, TrainConfig.build(saved_train(saved)), torch.device(device))
    gen = torch.Generator().manual_seed(seed)
    kw = {"steps": steps, "guidance": guidance} if task_name == "diffusion" else {}
    with torch.random.fork_rng(devices=[]):  # samplers draw from ``gen``; the caller's global RNG is left as it was
        torch.manual_seed(seed)
        samples = task.sample(model, n, gen, **kw).cpu()
    labels = None
    # class-conditional DDPM, GAN and VAE sample cycled labels 0..K-1 (their task's default)
    k = int(getattr(model.config, "num_classes", 0) or 0) if task_name in ("diffusion", "gan", "vae") else 0
    if k:
        labels = torch.arange(n) % k
    kind = "images" if samples.ndim == 4 else "points" if samples.ndim == 2 and samples.shape[1] == 2 else "vectors"
    return Generated(
        kind=kind,
        task=task_name,
        model_name=model_name,
        samples=samples,
        labels=labels,
        model=model,
        task_obj=task,
        real=bundle.train.inputs[0][:1000],
    )


def write_generated(g: Generated, out: str | Path) -> Path:
    """Write text to a .txt file, image samples as a PNG grid, 2-D samples as a scatter PNG
    (a flow also gets its density map)."""
    from archlab.io import atomic_write_text

    out = Path(out)
    if g.kind == "text":
        if out.suffix.lower() != ".txt":
            raise ConfigError(f"text from a language model goes to a .txt file; got {out}")
        return atomic_write_text(out, g.text or "")
    if out.suffix.lower() != ".png":
        raise ConfigError(f"samples are written as a .png picture; got {out}")
    from archlab.report.plots import draw
    from archlab.tasks.pictures import ImageGrid, PointsPlot

    title = f"{g.model_name} ({g.task}), {len(g.samples)} samples"
    if g.kind == "images":
        titles = [str(int(c)) for c in g.labels] if g.labels is not None else None
        return draw(ImageGrid(g.samples, titles=titles, title=title), out)
    if g.kind == "points":
        log_prob = g.model.log_prob if g.task == "flow" and hasattr(g.model, "log_prob") else None
        return draw(PointsPlot(g.samples, real=g.real, log_prob=log_prob, title=title), out)
    raise ConfigError(f"cannot draw samples of shape {tuple(g.samples.shape[1:])}; write them with the Python API")
