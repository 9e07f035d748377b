"""Vision and signal conv families: cnn, resnet, unet, siamese, and the contrastive losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import archlab
from archlab.errors import ConfigError, ShapeError
from archlab.tasks.contrastive import info_nce, recall_at_k, triplet_loss


def _n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


# -- cnn ---------------------------------------------------------------------------------------


def test_lenet_param_count_is_analytic():
    model = archlab.create("cnn_lenet_cifar", device="meta")
    conv1 = 3 * 6 * 5 * 5 + 6
    conv2 = 6 * 16 * 5 * 5 + 16
    # 32 -conv5-> 28 -pool-> 14 -conv5-> 10 -pool-> 5
    fc1, fc2, fc3 = 16 * 5 * 5 * 120 + 120, 120 * 84 + 84, 84 * 10 + 10
    assert _n_params(model) == conv1 + conv2 + fc1 + fc2 + fc3


def test_seed004_cnn_param_count_is_analytic():
    model = archlab.create("cnn_bn_cifar", device="meta")
    convs = sum(ci * co * 9 + co for ci, co in [(3, 32), (32, 64), (64, 128)])
    bns = 2 * (32 + 64 + 128)
    fcs = 128 * 4 * 4 * 256 + 256 + 256 * 10 + 10
    assert _n_params(model) == convs + bns + fcs


@pytest.mark.parametrize("dims,shape", [(1, (4, 2, 50)), (2, (4, 3, 20, 24))])
@pytest.mark.parametrize("head", ["global_avg", "global_max", "flatten"])
def test_cnn_shapes_1d_and_2d(dims, shape, head):
    spatial = list(shape[2:])
    model = archlab.create(
        "cnn_digits",
        dims=dims,
        in_channels=shape[1],
        input_size=spatial,
        head=head,
        channels=[8, 12, 16],
        kernel_sizes=[5, 3, 3],
        num_classes=7,
    )
    out = model(torch.randn(*shape))
    assert out.shape == (4, 7)


def test_cnn1d_mnist1d_shape():
    model = archlab.create("cnn1d_mnist1d").eval()
    assert model(torch.randn(5, 1, 40)).shape == (5, 10)


def test_cnn_valid_padding_and_vgg_stages_feature_size():
    model = archlab.create(
        "cnn_simple_mnist",
        channels=[4, 8],
        kernel_sizes=[3],
        padding="valid",
        convs_per_stage=2,
        input_size=[28, 28],
        hidden_sizes=[],
    )
    # 28 -2 convs-> 24 -pool-> 12 -2 convs-> 8 -pool-> 4
    assert model.classifier.in_features == 8 * 4 * 4
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(
    "overrides,field",
    [
        (dict(channels=[]), "channels"),
        (dict(input_size=None), "input_size"),
        (dict(input_size=[2, 2]), "input_size"),
        (dict(input_size=[8]), "input_size"),
        (dict(kernel_sizes=[3, 3, 3]), "kernel_sizes"),
        (dict(pool="median"), "pool"),
        (dict(dims=3), "dims"),
    ],
)
def test_cnn_bad_config_names_the_field(overrides, field):
    with pytest.raises(ConfigError) as info:
        archlab.create("cnn_digits", **overrides)
    assert field in str(info.value)


def test_flatten_cnn_checks_spatial_size():
    model = archlab.create("cnn_simple_mnist")
    with pytest.raises(ShapeError, match=r"cnn_simple_mnist expects x \(B, 1, 28, 28\) float; got \(2, 1, 32, 32\)"):
        model(torch.randn(2, 1, 32, 32))


# -- resnet ------------------------------------------------------------------------------------


def test_resnet50_param_count_matches_paper():
    model = archlab.create("resnet50", device="meta")
    assert _n_params(model) == 25_557_032


def test_resnet18_34_param_counts_match_reference():
    # the torchvision reference counts for 1000 classes
    assert _n_params(archlab.create("resnet18", device="meta")) == 11_689_512
    assert _n_params(archlab.create("resnet34", device="meta")) == 21_797_672


def test_resnet_input_check_message():
    model = archlab.create("resnet18", num_classes=10, layers=[1, 1, 1, 1]).eval()
    with pytest.raises(ShapeError) as info:
        model(torch.randn(8, 1, 28, 28))
    assert "resnet18 expects x (B, 3, H, W) float; got (8, 1, 28, 28) float32" in str(info.value)


def test_resnet_cifar_stem_keeps_resolution_until_stage2():
    model = archlab.create("resnet20_cifar").eval()
    x = torch.randn(2, 3, 32, 32)
    stem = model.stem(x)
    assert stem.shape == (2, 16, 32, 32)
    assert model.stages(stem).shape == (2, 64, 8, 8)
    assert model(x).shape == (2, 10)


def test_tiny_resnet_matches_seed_layout():
    model = archlab.create("tiny_resnet").eval()
    blocks = list(model.stages[0])
    assert len(blocks) == 4 and all(type(b).__name__ == "BasicBlock" for b in blocks)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)


def test_zero_init_residual_makes_blocks_start_as_identity_branch():
    model = archlab.create("resnet18", layers=[1, 1], widths=[8, 16], num_classes=3, zero_init_residual=True)
    last = [m for m in model.modules() if getattr(m, "is_last_bn", False)]
    assert len(last) == 2 and all(torch.count_nonzero(m.weight) == 0 for m in last)
    plain = archlab.create("resnet18", layers=[1, 1], widths=[8, 16], num_classes=3)
    assert all(torch.all(m.weight == 1) for m in plain.modules() if getattr(m, "is_last_bn", False))


def test_resnet_conv_init_is_kaiming_fan_out():
    torch.manual_seed(0)
    model = archlab.create("resnet18", layers=[1, 1], widths=[16, 64], num_classes=3)
    w = model.stages[1][0].conv1.weight  # 16 -> 64 channels, 3x3: fan_out 576 (fan_in only 144)
    expected = (2.0 / (64 * 9)) ** 0.5
    assert abs(w.std().item() - expected) / expected < 0.05


@pytest.mark.parametrize("length,classes", [(40, 10), (150, 2)])
def test_resnet1d_mnist1d_and_gunpoint_shapes(length, classes):
    model = archlab.create("resnet1d", num_classes=classes, length=length).eval()
    assert model(torch.randn(3, 1, length)).shape == (3, classes)


def test_resnet1d_blocks_follow_fawaz():
    model = archlab.create("resnet1d")
    convs = [[m for m in b.body.modules() if isinstance(m, torch.nn.Conv1d)] for b in model.blocks]
    assert [[c.kernel_size[0] for c in block] for block in convs] == [[8, 5, 3]] * 3
    assert [block[-1].out_channels for block in convs] == [64, 128, 128]
    # 'same' padding: the length is kept through every block
    assert model.blocks(torch.randn(2, 1, 150)).shape == (2, 128, 150)


def test_resnet_bad_config():
    with pytest.raises(ConfigError, match="widths"):
        archlab.create("resnet18", layers=[2, 2], widths=[64, 128, 256])
    with pytest.raises(ConfigError, match="layers"):
        archlab.create("resnet18", layers=[])


# -- unet --------------------------------------------------------------------------------------


@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
@pytest.mark.parametrize("pad_mode", ["reflect", "zero"])
def test_unet_odd_size_returns_input_size(upsample, pad_mode):
    model = archlab.create("unet_small", out_channels=3, upsample=upsample, pad_mode=pad_mode).eval()
    out = model(torch.randn(2, 1, 37, 45))
    assert out.shape == (2, 3, 37, 45)


def test_unet_padding_rule_equals_manual_pad_then_crop():
    model = archlab.create("unet_small", pad_mode="zero").eval()
    x = torch.randn(1, 1, 13, 20)
    with torch.no_grad():
        out = model(x)
        manual = model(F.pad(x, (0, 4, 0, 3)))[..., :13, :20]  # 13 -> 16, 20 -> 24 (multiples of 8)
    assert torch.equal(out, manual)


def test_unet_classic_layout():
    model = archlab.create("unet", device="meta")
    widths = [enc[1][0].out_channels for enc in model.encoders] + [model.bottleneck[1][0].out_channels]
    assert widths == [64, 128, 256, 512, 1024]
    # Ronneberger et al.'s U-Net with padded convs and 2 classes: 31,030,658 parameters
    expected = 0
    c_in = 1
    for w in [64, 128, 256, 512, 1024]:
        expected += c_in * w * 9 + w + w * w * 9 + w
        c_in = w
    for w in [512, 256, 128, 64]:
        expected += (2 * w) * w * 4 + w  # transposed conv 2x2
        expected += (2 * w) * w * 9 + w + w * w * 9 + w
    expected += 64 * 2 + 2
    assert _n_params(model) == expected


def test_unet_reflect_too_small_raises():
    model = archlab.create("unet_small").eval()
    with pytest.raises(ShapeError, match="unet_small"):
        model(torch.randn(1, 1, 3, 5))


# -- siamese and contrastive losses ------------------------------------------------------------


@pytest.mark.parametrize("name,shape", [("siamese_mlp_digits", (5, 64)), ("siamese_cnn_digits", (5, 1, 8, 8))])
def test_siamese_embeddings_are_unit_norm(name, shape):
    model = archlab.create(name).eval()
    z = model(torch.randn(*shape))
    assert z.shape == (5, model.config.embed_dim)
    assert torch.allclose(z.norm(dim=-1), torch.ones(5), atol=1e-5)
    za, zb = model.embed_pair(torch.randn(*shape), torch.randn(*shape))
    assert za.shape == zb.shape == (5, model.config.embed_dim)


def test_siamese_embed_pair_shares_weights():
    model = archlab.create("siamese_mlp_digits").eval()
    x = torch.randn(4, 64)
    za, zb = model.embed_pair(x, x.clone())
    assert torch.allclose(za, zb, atol=1e-6)
    assert torch.allclose(model.similarity(x, x), torch.ones(4), atol=1e-5)


def test_siamese_cnn_encoder_on_signals():
    model = archlab.create("siamese_cnn_digits", input_shape=[2, 40]).eval()
    assert model(torch.randn(3, 2, 40)).shape == (3, 64)


def test_siamese_bad_config():
    with pytest.raises(ConfigError, match="input_shape"):
        archlab.create("siamese_mlp_digits", input_shape=[1, 8, 8])
    with pytest.raises(ConfigError, match="channels"):
        archlab.create("siamese_cnn_digits", channels=[])


def test_info_nce_lower_for_matched_than_shuffled_pairs():
    torch.manual_seed(0)
    z1 = F.normalize(torch.randn(32, 16), dim=-1)
    z2 = F.normalize(z1 + 0.1 * torch.randn(32, 16), dim=-1)  # noisy views of the same rows
    shuffled = z2[torch.randperm(32)]
    assert info_nce(z1, z2) < info_nce(z1, shuffled)
    assert info_nce(z1, z2).item() < 0.1 < info_nce(z1, shuffled).item()


def test_info_nce_symmetric_is_mean_of_directions():
    torch.manual_seed(1)
    z1, z2 = torch.randn(8, 5), torch.randn(8, 5)
    one = info_nce(z1, z2, symmetric=False)
    other = info_nce(z2, z1, symmetric=False)
    assert torch.allclose(info_nce(z1, z2, symmetric=True), (one + other) / 2, atol=1e-6)
    assert not torch.allclose(one, other)


def test_info_nce_uninformative_is_log_batch():
    z = torch.ones(6, 4)  # every similarity equal: uniform softmax over 6
    assert torch.allclose(info_nce(z, z), torch.log(torch.tensor(6.0)), atol=1e-5)


def test_info_nce_shape_and_temperature_checks():
    with pytest.raises(ShapeError, match="z2"):
        info_nce(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ShapeError, match=r"z1 \(B, D\)"):
        info_nce(torch.randn(4, 3, 1), torch.randn(4, 3, 1))
    with pytest.raises(ConfigError, match="temperature"):
        info_nce(torch.randn(4, 3), torch.randn(4, 3), temperature=0.0)


def test_triplet_loss_zero_when_margin_satisfied_and_positive_otherwise():
    a = torch.zeros(3, 2)
    p = torch.tensor([[0.1, 0.0]] * 3)
    n_far = torch.tensor([[1.0, 0.0]] * 3)  # d(a, n) - d(a, p) = 0.9 > margin 0.5
    assert triplet_loss(a, p, n_far, margin=0.5).item() == 0.0
    n_near = torch.tensor([[0.2, 0.0]] * 3)  # 0.1 + 0.5 - 0.2 = 0.4
    assert torch.allclose(triplet_loss(a, p, n_near, margin=0.5), torch.tensor(0.4))
    per_row = triplet_loss(a, p, n_near, margin=0.5, reduction="none")
    assert per_row.shape == (3,)


def test_triplet_loss_checks_shapes():
    with pytest.raises(ShapeError, match="negative"):
        triplet_loss(torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 2))


def test_recall_at_k():
    z = F.normalize(torch.eye(5), dim=-1)
    assert recall_at_k(z, z, k=1) == 1.0
    assert recall_at_k(z, z.roll(1, dims=0), k=1) == 0.0


def test_siamese_trains_with_info_nce_on_digits_shaped_data():
    """A few steps of InfoNCE on two noisy views of the same vectors lower the loss."""
    torch.manual_seed(0)
    model = archlab.create("siamese_mlp_digits", embed_dim=16, hidden_sizes=[32])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.randn(64, 64)

    def step():
        za, zb = model.embed_pair(x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x))
        return info_nce(za, zb, temperature=0.1)

    first = step().item()
    for _ in range(30):
        loss = step()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert step().item() < 0.5 * first


def test_capabilities_for_recommender():
    assert "unet" in archlab.list_models(task="segmentation")
    assert "siamese_cnn_digits" in archlab.list_models(task="embedding")
    assert {"resnet1d", "cnn1d_mnist1d"} <= set(archlab.list_models(modality="time_series"))
    for name in archlab.list_models(family="resnet"):
        assert archlab.model_info(name).when_to_use
