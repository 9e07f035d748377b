"""Smoke runs of the generative / self-supervised / graph / recommender tasks on real data,
sample shapes and finiteness, `archlab generate` for images, points and text."""

from __future__ import annotations

import math

import pytest
import torch

import archlab
from archlab.data import load

FAST = dict(max_steps=4, eval_every=2, log_every=2, batch_size=32)

CASES = [
    ("autoencoder_digits", "digits", "reconstruction", {"anomaly_class": 0}, {}, "val_auroc"),
    ("vae_digits", "digits", "vae", {}, {}, "val_kl"),
    ("gan_mlp", "digits", "gan", {}, {"latent_dim": 16}, "val_d_loss"),
    ("dcgan", "digits", "gan", {"loss": "hinge"}, {"image_size": 8, "latent_dim": 16}, "val_g_loss"),
    ("ddpm_unet_cond", "digits", "diffusion", {}, {"num_timesteps": 20}, "val_loss"),
    ("ddpm_points", "moons", "diffusion", {}, {"num_timesteps": 20}, "val_loss"),
    ("realnvp_2d", "moons", "flow", {}, {}, "val_gaussian_nll"),
    ("realnvp_image", "digits", "flow", {"dequantize": 17}, {}, "val_bits_per_dim"),
    ("siamese_cnn_digits", "digits", "contrastive", {}, {}, "val_recall_at_1"),
    ("gcn_karate", "karate", "node_classification", {}, {}, "val_accuracy"),
    ("gcn_graph_classifier", "graph_motifs", "graph_classification", {}, {}, "val_accuracy"),
    ("wide_deep", "affairs", "ctr", {}, {}, "val_normalized_entropy"),
    ("dlrm", "affairs", "ctr", {}, {}, "val_auroc"),
]


@pytest.mark.parametrize("model,data,task,topts,mopts,metric", CASES, ids=[f"{c[2]}-{c[0]}" for c in CASES])
def test_task_trains(tmp_path, model, data, task, topts, mopts, metric):
    r = archlab.fit(model, data, task, task_options=topts, model_overrides=mopts, out_dir=str(tmp_path), **FAST)
    assert r.steps == 4
    assert metric in r.metrics and math.isfinite(r.metrics[metric])
    assert math.isfinite(r.metrics["test_loss"])
    assert (r.run_dir / "final_metrics.json").is_file()


def test_gan_steps_both_players(tmp_path):
    torch.manual_seed(0)
    model = archlab.create("gan_mlp", latent_dim=8, out_features=64)
    g0 = [p.detach().clone() for p in model.generator.parameters()]
    d0 = [p.detach().clone() for p in model.discriminator.parameters()]
    r = archlab.fit(model, "digits", "gan", out_dir=str(tmp_path), **FAST)
    assert any(not torch.equal(a, b) for a, b in zip(g0, model.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, model.discriminator.parameters()))
    train = [h for h in r.history if h.get("kind") == "train"]
    assert {"d_loss", "g_loss"} <= set(train[-1])


def test_anomaly_class_is_left_out_of_training():
    from archlab.tasks import get_task
    from archlab.train.config import TrainConfig

    data = load("digits")
    n_zero = int((data.train.target == 0).sum())
    task = get_task("reconstruction", anomaly_class=0)
    task.setup(data, TrainConfig.build({}), torch.device("cpu"))
    assert n_zero > 0 and not bool((data.train.target == 0).any())
    assert bool((data.test.target == 0).any())  # evaluation still sees the anomalies


def test_union_batch_offsets_edges():
    from archlab.tasks.graph import union_batch

    x = torch.arange(2 * 3 * 1, dtype=torch.float32).reshape(2, 3, 1)
    edges = torch.tensor([[[0, 1], [1, 0]], [[0, 1], [-1, -1]]])
    xs, ei, b = union_batch(x, edges, torch.tensor([2, 3]))
    assert xs.shape == (5, 1) and b.tolist() == [0, 0, 1, 1, 1]
    assert ei.tolist() == [[0, 1, 2], [1, 0, 3]]


def test_class_recall_at_k():
    from archlab.tasks.contrastive import class_recall_at_k

    emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    assert class_recall_at_k(emb, torch.tensor([0, 0, 1, 1]), 1) == 1.0
    assert class_recall_at_k(emb, torch.tensor([0, 1, 0, 1]), 1) == 0.0


@pytest.mark.parametrize(
    "model,data,task,mopts,steps,shape",
    [
        ("vae_digits", "digits", "vae", {}, None, (6, 1, 8, 8)),
        ("gan_mlp", "digits", "gan", {"latent_dim": 8}, None, (6, 1, 8, 8)),
        ("ddpm_unet_cond", "digits", "diffusion", {"num_timesteps": 10}, 4, (6, 1, 8, 8)),
        ("realnvp_2d", "moons", "flow", {}, None, (6, 2)),
    ],
)
def test_samples_and_generate_png(tmp_path, model, data, task, mopts, steps, shape):
    from archlab.cli.main import main
    from archlab.runs.generate import generate_from_run

    r = archlab.fit(model, data, task, model_overrides=mopts, out_dir=str(tmp_path), **FAST)
    g = generate_from_run(r.run_dir, 6, steps=steps, guidance=1.0 if task == "diffusion" else None)
    assert tuple(g.samples.shape) == shape and torch.isfinite(g.samples).all()
    if len(shape) == 4:
        assert float(g.samples.min()) >= 0 and float(g.samples.max()) <= 1
    out = tmp_path / "s.png"
    args = ["generate", str(r.run_dir), "-n", "6", "-o", str(out)] + (["--steps", str(steps)] if steps else [])
    assert main(args) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_generated_text_decodes(tmp_path):
    from archlab.cli.main import main

    data = load("shakespeare", block_size=32, max_chars=20000)
    r = archlab.fit(
        "lstm_char_lm",
        data,
        "language-modeling",
        data_spec={"name": "shakespeare", "options": {"block_size": 32, "max_chars": 20000}},
        out_dir=str(tmp_path),
        **FAST,
    )
    out = tmp_path / "t.txt"
    assert main(["generate", str(r.run_dir), "-n", "50", "-o", str(out)]) == 0
    text = out.read_text()
    assert len(text) == 50 and set(text) <= set(data.info["vocab"])


def test_generate_refuses_a_classifier(tmp_path):
    from archlab.errors import ConfigError
    from archlab.runs.generate import generate_from_run

    r = archlab.fit("cnn_digits", "digits", out_dir=str(tmp_path), **FAST)
    with pytest.raises(ConfigError, match="generate works for"):
        generate_from_run(r.run_dir, 4)


def test_gan_writes_fixed_noise_grids(tmp_path):
    r = archlab.fit(
        "gan_mlp",
        "digits",
        "gan",
        task_options={"grid_every": 1},
        model_overrides={"latent_dim": 8},
        out_dir=str(tmp_path),
        **FAST,
    )
    grids = sorted(r.run_dir.glob("samples_step*.png"))
    assert [g.name for g in grids] == ["samples_step000002.png", "samples_step000004.png"]
    assert all(g.read_bytes()[:4] == b"\x89PNG" for g in grids)


@pytest.mark.parametrize(
    "model,mopts",
    [
        ("cvae_digits", {"hidden_sizes": [32], "latent_dim": 4}),
        ("cdcgan_digits", {"g_channels": 8, "d_channels": 8, "latent_dim": 16}),
    ],
)
def test_conditional_gan_vae_train_and_generate_cycled_labels(tmp_path, model, mopts):
    from archlab.cli.main import main
    from archlab.runs.generate import generate_from_run

    task = "vae" if "vae" in model else "gan"
    fast = {**FAST, "max_steps": 2, "eval_every": 1, "log_every": 1}
    r = archlab.fit(model, "digits", task, model_overrides=mopts, out_dir=str(tmp_path), **fast)
    assert r.steps == 2 and math.isfinite(r.metrics["test_loss"])
    assert r.model.config.num_classes == 10
    g = generate_from_run(r.run_dir, 12)
    assert tuple(g.samples.shape) == (12, 1, 8, 8) and torch.isfinite(g.samples).all()
    assert g.labels.tolist() == [i % 10 for i in range(12)]
    assert float(g.samples.min()) >= 0 and float(g.samples.max()) <= 1
    out = tmp_path / "c.png"
    assert main(["generate", str(r.run_dir), "-n", "12", "-o", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_conditional_model_needs_labelled_data():
    from archlab.data.base import Split
    from archlab.errors import ConfigError
    from archlab.tasks.generative_base import batch_labels

    m = archlab.create("cvae_digits")
    with pytest.raises(ConfigError, match="num_classes=10"):
        batch_labels(m, Split(inputs=(torch.rand(2, 64),)))
    assert batch_labels(archlab.create("vae_digits"), Split(inputs=(torch.rand(2, 64),))) == ()
