"""The one vocabulary of modalities and tasks.

Models declare what they take and what they are trained for (``register(..., modalities=...,
tasks=...)``), datasets say what they hold (``DataBundle.modality`` / ``.task``) and the task
registry names its trainers, all in these words, so that ``list_models(modality=m, task=t)``
finds every model that trains on a dataset of modality ``m`` for task ``t``.

Modalities (what one sample is):

- ``image``: a (C, H, W) grid of pixels.
- ``time_series``: an ordered numeric series, (C, L) or (L, F): sensor signals, UCR problems,
  MNIST-1D, yearly sunspots. Classifying a fixed-length series and forecasting the next values
  are *tasks* on this one modality, not two modalities.
- ``text``: a sequence of token ids (characters or sub-words).
- ``tabular``: a row of features, numeric and/or categorical.
- ``graph``: nodes with features and an ``edge_index``.
- ``points``: low-dimensional points (2-D toy sets such as moons), shown as scatter plots.

Tasks are the names of the trainers in :mod:`archlab.tasks` (plus ``seq2seq``, which archlab
can build and analyse but not yet train). Hyphens and a few common synonyms are accepted on input
(``language-modeling``, ``lm``, ``token_classification``) and turned into the canonical word.
"""

from __future__ import annotations

import difflib
from typing import Literal, get_args

from archlab.errors import ConfigError

Modality = Literal["image", "time_series", "text", "tabular", "graph", "points"]

Task = Literal[
    "classification",
    "regression",
    "forecasting",
    "tagging",
    "language_modeling",
    "segmentation",
    "reconstruction",
    "vae",
    "gan",
    "diffusion",
    "flow",
    "contrastive",
    "node_classification",
    "graph_classification",
    "node_embedding",
    "ctr",
    "seq2seq",
]

MODALITIES: tuple[str, ...] = get_args(Modality)
TASKS: tuple[str, ...] = get_args(Task)

MODALITY_DESCRIPTIONS = {
    "image": "a (C, H, W) grid of pixels",
    "time_series": "an ordered numeric series (signal, sensor, yearly values)",
    "text": "a sequence of token ids (characters or sub-words)",
    "tabular": "a row of numeric and/or categorical features",
    "graph": "nodes with features and edges",
    "points": "low-dimensional points (2-D toy sets)",
}

TASK_DESCRIPTIONS = {
    "classification": "one class per sample",
    "regression": "real values per sample",
    "forecasting": "the next values of a series from a window of past values",
    "tagging": "one class per token",
    "language_modeling": "the next token; generates text",
    "segmentation": "one class per pixel",
    "reconstruction": "autoencoding; anomaly scores from the reconstruction error",
    "vae": "variational autoencoder (ELBO); generates samples",
    "gan": "adversarial generation",
    "diffusion": "denoising diffusion; generates samples",
    "flow": "normalizing flow: exact likelihood, density estimation, samples",
    "contrastive": "embeddings from two views (InfoNCE); retrieval",
    "node_classification": "one class per graph node",
    "graph_classification": "one class per graph",
    "node_embedding": "unlabelled graph nodes (no trainer yet)",
    "ctr": "click-through / binary outcome from sparse fields",
    "seq2seq": "sequence to sequence (no trainer yet)",
}

_MODALITY_SYNONYMS = {
    "signal": "time_series",
    "sequence": "time_series",
    "timeseries": "time_series",
    "series": "time_series",
    "images": "image",
    "vision": "image",
    "table": "tabular",
    "graphs": "graph",
    "point": "points",
}
_TASK_SYNONYMS = {
    "lm": "language_modeling",
    "language_model": "language_modeling",
    "token_classification": "tagging",
    "sequence_tagging": "tagging",
    "anomaly_detection": "reconstruction",
    "autoencoder": "reconstruction",
    "density_estimation": "flow",
    "retrieval": "contrastive",
    "embedding": "contrastive",
}


def _canonical(word: str, known: tuple[str, ...], synonyms: dict[str, str], what: str) -> str:
    if not isinstance(word, str):
        raise ConfigError(f"{what} must be a word; got {type(word).__name__} {word!r}")
    key = word.strip().lower().replace("-", "_").replace(" ", "_")
    key = synonyms.get(key, key)
    if key in known:
        return key
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown {what} {word!r}{hint} (known: {', '.join(known)})")


def modality(word: str) -> str:
    """The canonical modality for ``word`` (``"signal"`` -> ``"time_series"``); ConfigError if unknown."""
    return _canonical(word, MODALITIES, _MODALITY_SYNONYMS, "modality")


def task(word: str) -> str:
    """The canonical task for ``word`` (``"language-modeling"`` -> ``"language_modeling"``)."""
    return _canonical(word, TASKS, _TASK_SYNONYMS, "task")
