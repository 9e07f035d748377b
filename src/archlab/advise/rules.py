"""The advisor's rule table: architecture-selection knowledge, paraphrased, one row per rule.

Sources: common practice for matching an architecture to the structure of the data (CNNs for
grids, recurrent and convolutional sequence models and Transformers for sequences, GNNs for
graphs), the usual model-selection checklist (data size and scale, compute budget), common
training pitfalls, and deployment design considerations (latency, memory, parameters); the
contender rules cite their paper and the data conditions it was measured on (and
``benchmarks/results/contenders.md`` what archlab measured on its bundled data).

A rule has an id, the modality it applies to (``*`` for all), a condition on
:class:`~archlab.advise.recommend.Context` (the data facts + the user's constraints), the advice,
the families it favours (a score added to their rank) or disfavours, an optional ``fix`` archlab
would apply, and its source. ``kind="warning"`` rules become warnings; ``kind="prefer"`` rules only
rank. Per-candidate checks (a learned position table shorter than the data's sequences, a TCN's
receptive field shorter than the season, a parameter count out of scale with the data, a causal
TCN classifier reading only its last step) live in :mod:`archlab.advise.recommend` and cite the ids
``positions-too-short``, ``receptive-field-short``, ``capacity-vs-data`` and ``tcn-classify-pool``
below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SMALL_TABULAR = 10_000  # rows below which gradient-boosted trees usually beat an MLP
IMBALANCE_RATIO = 3.0  # largest / smallest class count that calls for weighting
BN_MIN_BATCH = 8  # below this BatchNorm's batch statistics are too noisy
FEW_SAMPLES = 64  # a training split this small gives tiny batches whatever the setting
LONG_FOR_RNN = 200  # steps beyond which recurrent nets struggle to carry information
SMALL_IMAGE_SET = 20_000  # images below which a ViT trained from scratch loses to a CNN
PARAMS_PER_SAMPLE = 10  # a moderate capacity: about this many parameters per training sample ...
PARAMS_FLOOR = 10_000  # ... but never asks for a model below this size (tiny data still needs width)
OVERSIZED = 100  # times the moderate size beyond which a model is too big for the data
FEW_SERIES = 1_000  # labelled series below which a fixed-kernel transform + ridge beats training a net
LONG_FOR_ROCKET = 2_000  # steps beyond which MiniRocket's ~10,000 features per series get costly


@dataclass(frozen=True)
class Rule:
    id: str
    modality: str
    when: Callable[[Any], bool]
    advice: str
    source: str
    prefer: dict[str, float] = field(default_factory=dict)
    fix: str | None = None
    kind: str = "prefer"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "modality": self.modality,
            "advice": self.advice,
            "source": self.source,
            "prefer": dict(self.prefer),
            "fix": self.fix,
            "kind": self.kind,
        }


def _task(*tasks: str) -> Callable[[Any], bool]:
    return lambda c: c.task in tasks


BY_STRUCTURE = "practice: architecture by data structure"
CHECKLIST = "practice: model-selection checklist"
PITFALLS = "practice: common training pitfalls"
SELECTION_GUIDE = "practice: architecture selection guide"
DEPLOYMENT = "practice: deployment design considerations"
PAPER_DLINEAR = "Zeng et al. 2023, Are Transformers Effective for Time Series Forecasting?"
PAPER_NBEATS = "Oreshkin et al. 2020, N-BEATS (M3, M4, tourism: yearly to hourly series)"
PAPER_INCEPTION = "Ismail Fawaz et al. 2020, InceptionTime (UCR archive)"
PAPER_ROCKET = "Dempster et al. 2021, MiniRocket"
PAPER_FT = "Gorishniy et al. 2021, Revisiting Deep Learning Models for Tabular Data"

RULES: tuple[Rule, ...] = (
    # -- any modality ---------------------------------------------------------------------------
    Rule(
        "streaming",
        "*",
        lambda c: c.streaming,
        "Streaming / on-device use: a recurrent, causal-convolution or state-space model keeps a "
        "constant cost per step, full attention does not.",
        CHECKLIST,
        {"rnn": 3, "tcn": 3, "ssm": 3, "transformer": -2, "vit": -2},
        fix="rank RNN / TCN / SSM first",
        kind="warning",
    ),
    Rule(
        "class-imbalance",
        "*",
        lambda c: (c.facts.imbalance or 1) >= IMBALANCE_RATIO,
        "Classes are imbalanced: weight the loss by inverse class frequency (or use focal loss / "
        "resampling) and judge by F1 or AUROC, not accuracy.",
        PITFALLS,
        fix='train.class_weights="balanced"',
        kind="warning",
    ),
    Rule(
        "tiny-batch-batchnorm",
        "*",
        lambda c: (c.batch_given and c.batch < BN_MIN_BATCH) or (c.facts.n_samples or 10**9) < FEW_SAMPLES,
        "Batches will be tiny: BatchNorm's statistics become noise; use GroupNorm or LayerNorm.",
        PITFALLS,
        fix='norm="group" (CNN, ResNet, U-Net) or norm="layer" (MLP)',
        kind="warning",
    ),
    Rule(
        "generative-diffusion",
        "*",
        _task("diffusion", "gan", "vae", "flow"),
        "Generating samples: diffusion gives the best fidelity and trains stably; GANs are faster to "
        "sample, VAEs and flows give likelihoods.",
        BY_STRUCTURE,
        {"diffusion": 2, "gan": 1, "vae": 1, "flow": 1},
    ),
    Rule(
        "contrastive-siamese",
        "*",
        _task("contrastive"),
        "Retrieval / verification: a Siamese encoder trained contrastively builds a metric space.",
        BY_STRUCTURE,
        {"siamese": 3},
    ),
    Rule(
        "capacity-vs-data",
        "*",
        lambda c: False,  # a per-candidate check (recommend.capacity_check): it needs the params
        "Match capacity to the data: among presets the other rules rate alike, prefer the one "
        f"nearest a moderate size (about {PARAMS_PER_SAMPLE} parameters per training sample, at least "
        f"{PARAMS_FLOOR:,}); one {OVERSIZED} times that size mostly memorises the training set.",
        CHECKLIST + " (data shape and scale; compute budget)",
        fix="take a smaller preset or shrink it with --params-max",
        kind="warning",
    ),
    # -- tabular ---------------------------------------------------------------------------------
    Rule(
        "tabular-mlp",
        "tabular",
        _task("classification", "regression"),
        "Dense tabular features with no spatial or temporal structure: an MLP is the neural choice.",
        SELECTION_GUIDE,
        {"mlp": 3},
    ),
    Rule(
        "tabular-small-trees",
        "tabular",
        lambda c: c.task in ("classification", "regression") and (c.facts.n_samples or 10**9) < SMALL_TABULAR,
        "Small tabular data: gradient-boosted trees often beat an MLP; compare against the "
        "HistGradientBoosting baseline before trusting the network.",
        PITFALLS,
        fix="report a scikit-learn HistGradientBoosting baseline on the same split",
        kind="warning",
    ),
    Rule(
        "tabular-small-ft-transformer",
        "tabular",
        lambda c: c.task in ("classification", "regression") and (c.facts.n_samples or 10**9) < SMALL_TABULAR,
        "Small table: of the networks, FT-Transformer (feature tokens + [CLS]) and the tabular ResNet "
        "were the strongest across Gorishniy et al.'s tables; train one beside the gradient-boosting "
        "baseline and keep the network only where it matches the trees.",
        PAPER_FT + " (11 tables, 10^3 to 10^6 rows; trees still won on some)",
        {"ft_transformer": 4, "tabular_resnet": 2},
        fix="report a scikit-learn HistGradientBoosting baseline on the same split",
    ),
    Rule(
        "tabular-sparse-ids",
        "tabular",
        lambda c: c.task == "ctr" or bool(c.facts.extra.get("field_sizes")),
        "Sparse categorical IDs beside dense features (CTR, ranking): Wide & Deep or DLRM embed each field.",
        BY_STRUCTURE,
        {"recsys": 3, "mlp": 1},
    ),
    # -- image -----------------------------------------------------------------------------------
    Rule(
        "image-cnn",
        "image",
        _task("classification"),
        "Images carry spatial structure: convolutions (ResNet first, a plain CNN when small) "
        "build it in; ViT needs pretraining or lots of data to catch up.",
        BY_STRUCTURE + "; " + SELECTION_GUIDE,
        {"resnet": 3, "cnn": 2, "vit": 1},
    ),
    Rule(
        "image-small-no-vit",
        "image",
        lambda c: (
            c.task == "classification" and ((c.facts.n_samples or 10**9) < SMALL_IMAGE_SET or not c.pretrained_ok)
        ),
        "Few images and no pretrained weights: a ViT lacks the convolutional inductive bias; prefer a CNN/ResNet.",
        CHECKLIST,
        {"vit": -3},
    ),
    Rule(
        "image-segmentation-unet",
        "image",
        _task("segmentation"),
        "Per-pixel labels: U-Net's multi-scale encoder with skip connections to the decoder.",
        BY_STRUCTURE,
        {"unet": 3},
    ),
    Rule(
        "deep-needs-skips",
        "image",
        lambda c: c.task == "classification" and (c.facts.n_samples or 0) >= SMALL_IMAGE_SET,
        "Plenty of data supports a deep network; residual connections keep a deep one trainable.",
        SELECTION_GUIDE + "; " + DEPLOYMENT,
        {"resnet": 1},
    ),
    # -- time series -----------------------------------------------------------------------------
    Rule(
        "series-tcn-first",
        "time_series",
        _task("forecasting", "classification", "regression"),
        "Series: a TCN (or attention) gives a long receptive field with parallel training; "
        "LSTM/GRU and state-space models are the alternatives, seasonal naive the baseline.",
        BY_STRUCTURE + "; " + SELECTION_GUIDE,
        {"tcn": 3, "rnn": 2, "ssm": 2, "resnet": 1, "cnn": 1},
    ),
    Rule(
        "series-seasonal-linear",
        "time_series",
        lambda c: (
            c.task == "forecasting" and (c.facts.season or 0) >= 2 and (c.facts.n_samples or 0) >= 2 * c.facts.season
        ),
        "Seasonal series covering several seasons: a linear map of the window (DLinear / NLinear) "
        "already holds seasonal naive and smoothing, and N-BEATS adds non-linear basis stacks; try "
        "them before recurrent or convolutional nets, and keep seasonal naive as the bar.",
        PAPER_DLINEAR + "; " + PAPER_NBEATS,
        {"linear_forecaster": 6, "nbeats": 4, "rnn": -1},
    ),
    Rule(
        "series-classify-multiscale",
        "time_series",
        _task("classification"),
        "Classifying whole series: InceptionTime's parallel kernels of 10/20/40 steps see patterns of "
        "several lengths; MiniRocket's fixed kernels with a ridge head are the fast, strong reference.",
        PAPER_INCEPTION + "; " + PAPER_ROCKET,
        {"inception_time": 3, "rocket": 2},
    ),
    Rule(
        "series-few-rocket",
        "time_series",
        lambda c: (
            c.task in ("classification", "regression")
            and (c.facts.n_samples or 10**9) < FEW_SERIES
            and (c.facts.seq_len or 0) <= LONG_FOR_ROCKET
        ),
        "Few labelled series: MiniRocket learns no convolution (fixed kernels, biases from the data, "
        "a ridge head fitted in closed form), so it does not overfit a small training set the way a "
        "trained network can, and fits in seconds; rank it first.",
        PAPER_ROCKET + " (UCR archive: 128 problems, most with under 1,000 training series)",
        {"rocket": 4},
    ),
    Rule(
        "series-long-for-rnn",
        "time_series",
        lambda c: (c.facts.seq_len or 0) > LONG_FOR_RNN,
        "Long sequences: recurrent nets forget over hundreds of steps; dilated convolutions or SSMs cover them.",
        DEPLOYMENT,
        {"rnn": -2, "tcn": 1, "ssm": 1},
        kind="warning",
        fix="prefer TCN / SSM over LSTM/GRU",
    ),
    Rule(
        "receptive-field-short",
        "time_series",
        lambda c: False,
        "A TCN's receptive field is shorter than the season or the input window: it cannot see a full cycle.",
        DEPLOYMENT,
        fix="add TCN levels (channels list) or raise kernel_size",
        kind="warning",
    ),
    Rule(
        "tcn-classify-pool",
        "time_series",
        lambda c: False,  # a per-candidate check (recommend.tcn_pooling): it needs the config
        "Classifying whole sequences with a causal TCN: average the features of every step (global "
        "average pooling) instead of reading the last step, whose causal features weight the most "
        "recent steps and miss a pattern early in the sequence; keep the last step for streaming.",
        "practice: global average pooling before the classifier head (Lin et al. 2014, Network in Network)",
        fix="pooling='mean' (kept 'last' with --streaming)",
        kind="warning",
    ),
    # -- text ------------------------------------------------------------------------------------
    Rule(
        "text-generation-decoder",
        "text",
        _task("language_modeling"),
        "Generating text: a decoder-only Transformer; an RNN language model when it must run on-device.",
        BY_STRUCTURE,
        {"transformer": 3, "ssm": 1, "rnn": 1},
    ),
    Rule(
        "text-understanding-encoder",
        "text",
        _task("classification", "tagging"),
        "Understanding text: an encoder Transformer; a bag of n-grams (fastText) or a BiLSTM when data and "
        "compute are small. Mask padding.",
        BY_STRUCTURE + "; " + PITFALLS,
        {"transformer": 3, "fasttext": 2, "rnn": 1},
    ),
    Rule(
        "positions-too-short",
        "text",
        lambda c: False,
        "The data's sequences are longer than the model's learned position table.",
        DEPLOYMENT,
        fix="max_seq_len raised to the data's length (new positions start untrained), or pos='rotary'",
        kind="warning",
    ),
    # -- graph / points --------------------------------------------------------------------------
    Rule(
        "graph-gnn",
        "graph",
        lambda c: True,
        "Graphs: message passing (GCN, GAT, GraphSAGE) uses the edges; an MLP on node features ignores them.",
        BY_STRUCTURE,
        {"gnn": 3},
    ),
    Rule(
        "points-mlp",
        "points",
        lambda c: True,
        "Low-dimensional points: a small MLP is enough.",
        SELECTION_GUIDE,
        {"mlp": 3, "diffusion": 1, "flow": 1},
    ),
)

RULES_BY_ID = {r.id: r for r in RULES}


def rules_for(modality: str) -> list[Rule]:
    """The rules that can fire for ``modality`` (its own and the ``*`` ones)."""
    return [r for r in RULES if r.modality in ("*", modality)]


def fired(ctx) -> list[Rule]:
    """The rules whose condition holds for ``ctx``."""
    return [r for r in rules_for(ctx.facts.modality) if r.when(ctx)]
