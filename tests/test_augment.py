"""Batch augmentation (train/augment.py): crop, flip, mixup and CutMix on whole batches; the
soft-target classification loss; refusal where augmentation does not apply; exact resume with
augmentation on."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import archlab
from archlab.checkpoint import tensors_from_bytes
from archlab.data.base import Split
from archlab.errors import ConfigError
from archlab.rundir import read_marker
from archlab.tasks.classification import ClassificationTask, focal_loss, soft_target_loss
from archlab.train import TrainConfig, train_model
from archlab.train.augment import AugmentConfig, BatchAugmenter
from test_train_support import diabetes_bundle, digits_bundle, digits_images_bundle, run_child

TESTS = Path(__file__).resolve().parent


def _images(b: int = 6, c: int = 2, h: int = 5, w: int = 7) -> torch.Tensor:
    return torch.arange(b * c * h * w, dtype=torch.float32).reshape(b, c, h, w) + 1


def _augment(seed: int = 0, num_classes: int = 4, fill: float = 0.0, **options) -> BatchAugmenter:
    return BatchAugmenter(AugmentConfig(**options), num_classes, torch.full((2,), fill), seed)


# -- the image ops ---------------------------------------------------------------------------------


def test_crop_takes_a_window_of_the_padded_image_per_sample():
    x, pad = _images(), 2
    out = _augment(crop_padding=pad, fill=-9.0)(Split((x,), torch.zeros(6, dtype=torch.long))).inputs[0]
    assert out.shape == x.shape
    padded = F.pad(x, (pad,) * 4, value=-9.0)
    offsets = []
    for i in range(len(x)):
        found = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + 5, dx : dx + 7])
        ]
        assert found, f"sample {i} is not a window of its padded image"
        offsets.append(found[0])
    assert len(set(offsets)) > 1, "every sample got the same offset"


def test_hflip_is_off_by_default_and_flips_some_samples_when_on():
    assert AugmentConfig().hflip is False and not AugmentConfig().active
    x = _images(b=32)
    out = _augment(hflip=True)(Split((x,), torch.zeros(32, dtype=torch.long))).inputs[0]
    flipped = [torch.equal(out[i], x[i].flip(-1)) for i in range(32)]
    kept = [torch.equal(out[i], x[i]) for i in range(32)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert any(flipped) and any(kept)


def test_mixup_mixes_inputs_and_targets_with_one_lam():
    x, y = _images(b=6), torch.arange(6)
    out = _augment(num_classes=6, mixup_alpha=0.4)(Split((x,), y))
    soft = out.target
    assert soft.shape == (6, 6) and torch.allclose(soft.sum(1), torch.ones(6))
    lams = set()
    for i in range(6):  # labels are distinct: row i holds lam at i and 1 - lam at its partner's label
        partners = [int(k) for k in soft[i].nonzero() if int(k) != i]
        j, lam = (partners[0] if partners else i), float(soft[i, i])
        assert torch.allclose(out.inputs[0][i], lam * x[i] + (1 - lam) * x[j], atol=1e-4)
        if partners:
            lams.add(round(lam, 5))
    assert len(lams) == 1, "one lam per batch"


def test_cutmix_target_weight_is_the_area_left_from_each_image():
    x, y = _images(b=4, h=8, w=8), torch.tensor([0, 1, 2, 3])
    aug = _augment(seed=3, cutmix_alpha=1.0)
    for _ in range(5):
        out = aug(Split((x,), y))
        for i in range(4):
            own = (out.inputs[0][i] == x[i]).all(0).float().mean()  # pixels still from image i
            if own < 1:
                assert torch.isclose(out.target[i, i], own), (float(out.target[i, i]), float(own))


def test_mixing_multilabel_and_binary_targets():
    x = _images(b=4)
    multi = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    out = _augment(num_classes=3, mixup_alpha=1.0)(Split((x,), multi))
    assert out.target.shape == (4, 3) and out.target.is_floating_point()
    assert ((out.target >= 0) & (out.target <= 1)).all()


def test_augmenter_is_reproducible_from_its_generator_state():
    x, y = _images(b=8), torch.arange(8) % 4
    a = _augment(seed=5, crop_padding=1, hflip=True, mixup_alpha=0.2, cutmix_alpha=1.0)
    a(Split((x,), y))
    state = a.generator.get_state()
    first = [a(Split((x,), y)) for _ in range(3)]
    a.generator.set_state(state)
    again = [a(Split((x,), y)) for _ in range(3)]
    for p, q in zip(first, again):
        assert torch.equal(p.inputs[0], q.inputs[0]) and torch.equal(p.target, q.target)


# -- the loss --------------------------------------------------------------------------------------


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_soft_target_loss_equals_cross_entropy_on_one_hot_targets(smoothing, weighted):
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(7, 4, generator=g), torch.tensor([0, 1, 2, 3, 1, 0, 2])
    w = torch.tensor([1.0, 2.0, 0.5, 3.0]) if weighted else None
    want = F.cross_entropy(logits, y, weight=w, label_smoothing=smoothing)
    got = soft_target_loss(logits, F.one_hot(y, 4).float(), weight=w, label_smoothing=smoothing)
    assert torch.allclose(got, want, atol=1e-6)


def test_soft_target_loss_focal_and_linearity():
    g = torch.Generator().manual_seed(1)
    logits, a, b = torch.randn(5, 3, generator=g), torch.tensor([0, 1, 2, 0, 1]), torch.tensor([2, 2, 0, 1, 0])
    oa, ob = F.one_hot(a, 3).float(), F.one_hot(b, 3).float()
    assert torch.allclose(soft_target_loss(logits, oa, gamma=2.0), focal_loss(logits, a, 2.0), atol=1e-6)
    lam = 0.3
    mixed = soft_target_loss(logits, lam * oa + (1 - lam) * ob)
    assert torch.allclose(mixed, lam * F.cross_entropy(logits, a) + (1 - lam) * F.cross_entropy(logits, b), atol=1e-6)


def test_classification_task_takes_soft_targets():
    data = digits_images_bundle()
    task = ClassificationTask()
    task.setup(data, TrainConfig(), torch.device("cpu"))
    logits, y = torch.randn(3, 10), torch.tensor([1, 5, 9])
    assert torch.allclose(task.loss(logits, F.one_hot(y, 10).float()), task.loss(logits, y), atol=1e-6)
    binary = ClassificationTask(kind="binary")
    binary.setup(digits_images_bundle(), TrainConfig(), torch.device("cpu"))
    one = torch.randn(3, 1)
    soft = torch.tensor([[0.2, 0.8], [1.0, 0.0], [0.5, 0.5]])
    want = F.binary_cross_entropy_with_logits(one.reshape(3), soft[:, 1])
    assert torch.allclose(binary.loss(one, soft), want)


# -- config and refusal ------------------------------------------------------------------------------


def test_augment_is_a_nested_train_option():
    cfg = TrainConfig().with_overrides(["augment.mixup_alpha=0.2", "augment.crop_padding=1"])
    assert cfg.augment == AugmentConfig(mixup_alpha=0.2, crop_padding=1)
    assert TrainConfig.from_yaml(cfg.to_yaml()) == cfg
    with pytest.raises(ConfigError, match="mixup_alpha"):
        TrainConfig.build({"augment": {"mixup_alpha": -1}})
    with pytest.raises(ConfigError, match="cutmix"):
        TrainConfig.build({"augment": {"cutmix": 1.0}})


@pytest.mark.parametrize(
    "data,task,expected",
    [
        (digits_bundle, "classification", "image classification; got task 'classification' on 'tabular'"),
        (diabetes_bundle, "regression", "image classification; got task 'regression'"),
    ],
)
def test_augment_is_refused_where_it_does_not_apply(tmp_path, data, task, expected):
    model = archlab.create("mlp_tabular", in_features=64, out_features=10, hidden_sizes=[8])
    with pytest.raises(ConfigError, match=expected) as err:
        archlab.fit(model, data(), task=task, out_dir=tmp_path, max_steps=1, augment={"mixup_alpha": 0.2})
    assert "\n" not in str(err.value)


def test_augmentation_off_changes_nothing(tmp_path):
    def run(name, **kw):  # the engine itself: no run-directory extras
        torch.manual_seed(0)
        model = archlab.create("cnn_digits", channels=[8, 8], hidden_sizes=[16])
        cfg = TrainConfig.build(max_steps=3, batch_size=32, eval_every=100, precision="fp32", seed=1, **kw)
        train_model(model, digits_images_bundle(), ClassificationTask(), cfg, run_dir=tmp_path / name)
        return model.state_dict()

    plain, off, on = run("plain"), run("off", augment={}), run("on", augment={"mixup_alpha": 0.5})
    assert all(torch.equal(plain[k], off[k]) for k in plain)
    assert any(not torch.equal(plain[k], on[k]) for k in plain if plain[k].is_floating_point())


# -- exact resume with augmentation on -----------------------------------------------------------

CHILD = textwrap.dedent(r"""
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, sys.argv[4])
    from test_train_support import digits_images_bundle
    import archlab
    from archlab.runs import resume

    run_dir, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    calls = {"n": 0}

    def die_on_nth(module, args):
        calls["n"] += 1
        if calls["n"] == n:
            os.kill(os.getpid(), signal.SIGKILL)

    data = digits_images_bundle()
    if mode == "fresh":
        torch.manual_seed(0)
        model = archlab.create("cnn_digits", channels=[8, 8], hidden_sizes=[16])
        model.register_forward_pre_hook(die_on_nth)
        archlab.fit(model, data, out_dir=os.path.dirname(run_dir), run_name=os.path.basename(run_dir),
                    max_steps=20, batch_size=32, lr=3e-3, log_every=5, eval_every=8, checkpoint_every=6,
                    precision="fp32", deterministic=True, seed=3,
                    augment={"crop_padding": 1, "hflip": True, "mixup_alpha": 0.4, "cutmix_alpha": 1.0})
    else:
        resume(run_dir, data=data)
""")


def _run(run_dir: Path, mode: str, n: int = 0) -> int:
    return run_child(CHILD, str(run_dir), mode, str(n), str(TESTS))


def test_sigkill_then_resume_with_augmentation_is_bitwise_exact(tmp_path):
    ref_dir, run_dir = tmp_path / "ref" / "run", tmp_path / "killed" / "run"
    assert _run(ref_dir, "fresh") == 0
    # Forward 16 is step 15's (after the checkpoint at step 12 and the evaluation at step 8).
    assert _run(run_dir, "fresh", 16) == -9, "the child was expected to be killed"
    state = tensors_from_bytes((run_dir / "last" / "state.safetensors").read_bytes())
    assert "rng.augment" in state and read_marker(run_dir / "last")["step"] > 0
    assert _run(run_dir, "resume") == 0
    want = tensors_from_bytes((ref_dir / "last" / "model.safetensors").read_bytes())
    got = tensors_from_bytes((run_dir / "last" / "model.safetensors").read_bytes())
    assert got.keys() == want.keys()
    for k in want:
        assert torch.equal(got[k], want[k]), f"{k} differs after kill and resume"
