"""The task contract: every task in ``TASKS`` builds with defaults, validates its options, rebuilds
from ``options()``, and answers every hook the engine calls, with the base signature."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import torch

import archlab
import archlab.tasks.gan as gan_module
from archlab.data.base import DataBundle, Split
from archlab.errors import ConfigError, ShapeError
from archlab.tasks import TASKS, get_task
from archlab.tasks.base import Task
from archlab.tasks.pictures import ForecastPlot, ImageGrid, PointsPlot
from archlab.train.config import TrainConfig
from archlab.train.step import StepContext

# Exactly the hooks train/loop.py and train/evaluate.py call (and runs/ calls options()).
HOOKS = (
    "setup",
    "model_overrides",
    "configure_optimizers",
    "training_step",
    "forward",
    "batch_loss",
    "make_metrics",
    "update_metrics",
    "eval_extras",
    "finish_extras",
    "predict",
    "options",
    "on_evaluate",
    "on_fit_end",
)
NAMES = sorted(TASKS)


def _params(fn) -> list[str]:
    return [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


@pytest.mark.parametrize("name", NAMES)
def test_task_builds_with_defaults_and_round_trips_options(name):
    task = get_task(name)
    assert task.name == name
    opts = task.options()
    assert isinstance(opts, dict)
    rebuilt = get_task(name, **opts)
    assert rebuilt.options() == opts
    assert type(task)(**opts).options() == opts


@pytest.mark.parametrize("name", NAMES)
def test_task_rejects_an_unknown_option_naming_it(name):
    with pytest.raises(ConfigError, match="no_such_option") as err:
        get_task(name, no_such_option=1)
    assert name in str(err.value)


@pytest.mark.parametrize("name", NAMES)
def test_task_declares_every_hook_with_the_base_signature(name):
    task = get_task(name)
    for hook in HOOKS:
        assert hasattr(Task, hook), f"Task does not declare {hook}"
        method = getattr(task, hook)
        assert callable(method)
        assert _params(getattr(type(task), hook)) == _params(getattr(Task, hook)), f"{name}.{hook}"


def test_a_misspelt_option_names_the_closest_one():
    with pytest.raises(ConfigError, match="did you mean 'loss'"):
        get_task("gan", los="hinge")
    with pytest.raises(ConfigError, match="takes no options"):
        get_task("regression", kind="binary")


@pytest.mark.parametrize(
    "name,options,field",
    [
        ("classification", {"kind": "ternary"}, "kind"),
        ("classification", {"threshold": 1.5}, "threshold"),
        ("gan", {"loss": "wasserstein"}, "loss"),
        ("gan", {"d_lr_ratio": 0}, "d_lr_ratio"),
        ("gan", {"grid_every": -1}, "grid_every"),
        ("vae", {"beta": -1.0}, "beta"),
        ("diffusion", {"p_uncond": 2.0}, "p_uncond"),
        ("flow", {"dequantize": 1}, "dequantize"),
        ("reconstruction", {"quantile": 0}, "quantile"),
        ("contrastive", {"drop": 1.0}, "drop"),
        ("vae", {"data_range": "pixels"}, "data_range"),
    ],
)
def test_options_are_typed_and_validated(name, options, field):
    with pytest.raises(ConfigError, match=field):
        get_task(name, **options)


def test_options_keep_the_constructor_keywords_of_the_examples():
    task = get_task("gan", loss="hinge", d_lr_ratio=2.0)
    assert task.opts.loss == "hinge" and task.opts.d_lr_ratio == 2.0
    assert task.options()["d_lr_ratio"] == 2.0


def test_options_save_what_setup_resolved(digits):
    task = get_task("classification")
    task.setup(digits, TrainConfig.build({}), torch.device("cpu"))
    assert task.options()["kind"] == "multiclass"  # a rebuilt task needs no re-detection


def test_default_picture_hooks_return_nothing():
    task = get_task("regression")
    model = torch.nn.Linear(2, 1)
    assert task.on_evaluate(model, 1) == {}
    assert task.on_fit_end(model, None) == {}


# -- GAN: one step implementation, pictures as data, no global RNG ---------------------------------


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    from archlab.data import load

    return load("digits")


def _small(split: Split, n: int = 32) -> Split:
    return split.take(torch.arange(n))


def test_gan_training_step_goes_through_gan_step(digits, monkeypatch):
    task = get_task("gan")
    model = archlab.create("gan_mlp", latent_dim=8, out_features=64)
    task.setup(digits, TrainConfig.build({}), torch.device("cpu"))
    optimizers, _ = task.configure_optimizers(model, TrainConfig.build({}), 10)
    calls = []
    real_step = gan_module.gan_step

    def spy(*args, **kwargs):
        calls.append(kwargs.get("ctx"))
        return real_step(*args, **kwargs)

    monkeypatch.setattr(gan_module, "gan_step", spy)
    ctx = StepContext(torch.device("cpu"), "fp32", None, 1)
    out = task.training_step(model, _small(digits.train), optimizers, ctx)
    assert calls == [ctx]
    assert set(out) == {"loss", "d_loss", "g_loss"}
    assert all(isinstance(v, torch.Tensor) and not v.requires_grad for v in out.values())
    assert torch.equal(out["loss"], out["d_loss"] + out["g_loss"])


def test_gan_step_with_a_context_matches_the_plain_step():
    """The engine's path (ctx, fp32, no accumulation) and the standalone path take the same step."""
    real = torch.rand(16, 64) * 2 - 1
    z = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    results = []
    for ctx in (None, StepContext(torch.device("cpu"), "fp32", None, 1)):
        torch.manual_seed(0)
        m = archlab.create("gan_mlp", latent_dim=8, out_features=64)
        opt_d = torch.optim.Adam(m.discriminator.parameters(), lr=1e-3)
        opt_g = torch.optim.Adam(m.generator.parameters(), lr=1e-3)
        out = gan_module.gan_step(m, real, opt_d, opt_g, "hinge", z=z, ctx=ctx)
        results.append((out, m.state_dict()))
    (plain, w_plain), (with_ctx, w_ctx) = results
    assert all(isinstance(v, float) for v in plain.values())
    assert all(isinstance(v, torch.Tensor) for v in with_ctx.values())
    assert {k: float(v) for k, v in with_ctx.items()} == plain
    assert all(torch.equal(w_plain[k], w_ctx[k]) for k in w_plain)


def test_gan_on_evaluate_returns_a_fixed_noise_grid_without_touching_the_global_rng(digits):
    task = get_task("gan", grid_every=2)
    model = archlab.create("gan_mlp", latent_dim=8, out_features=64)
    task.setup(digits, TrainConfig.build({}), torch.device("cpu"))
    state = torch.get_rng_state()
    first = task.on_evaluate(model, 2)
    assert torch.equal(torch.get_rng_state(), state)
    assert list(first) == ["samples_step000002"]
    grid = first["samples_step000002"]
    assert isinstance(grid, ImageGrid) and tuple(grid.images.shape) == (64, 1, 8, 8)
    assert float(grid.images.min()) >= 0 and float(grid.images.max()) <= 1
    assert task.on_evaluate(model, 4) == {}  # every 2nd evaluation
    again = task.on_evaluate(model, 6)["samples_step000006"]
    assert torch.equal(again.images, grid.images)  # same noise, same (untrained) model
    assert model.training  # mode restored


def test_forecasting_on_fit_end_returns_a_forecast_plot():
    from test_train_support import sunspots_bundle

    data = sunspots_bundle(window=22, horizon=3)
    task = get_task("forecasting")
    task.setup(data, TrainConfig.build({}), torch.device("cpu"))
    assert task.options()["season"] == data.info["season"]
    model = archlab.create("lstm_sine_forecaster", horizon=3, seq_len=22)
    pictures = task.on_fit_end(model, data)
    assert list(pictures) == ["forecast"]
    plot = pictures["forecast"]
    assert isinstance(plot, ForecastPlot) and plot.actual.shape == plot.predicted.shape == (len(data.test),)


def test_pictures_check_their_shapes():
    with pytest.raises(ShapeError, match="ImageGrid"):
        ImageGrid(torch.rand(4, 2, 8, 8))
    with pytest.raises(ShapeError, match="PointsPlot"):
        PointsPlot(torch.rand(4, 3))
    with pytest.raises(ShapeError, match="ForecastPlot"):
        ForecastPlot(torch.rand(4), torch.rand(5), torch.rand(4))


def test_no_task_module_reseeds_the_global_rng():
    reseed = re.compile(r"\btorch\.(?:cuda\.|random\.)?(?:manual_seed|seed)(?:_all)?\(|\b(?:np\.)?random\.seed\(")
    root = Path(archlab.tasks.__file__).parent
    offenders = [
        f"{p.name}:{i}"
        for p in sorted(root.glob("*.py"))
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if reseed.search(line)
    ]
    assert offenders == []


def test_no_matplotlib_in_tasks():
    imports = re.compile(r"^\s*(?:import|from)\s+matplotlib|require\(\"matplotlib\"", re.MULTILINE)
    root = Path(archlab.tasks.__file__).parent
    assert [p.name for p in root.glob("*.py") if imports.search(p.read_text())] == []
