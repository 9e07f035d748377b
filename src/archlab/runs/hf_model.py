"""``hf:SOURCE`` model names: a Hugging Face encoder + head, with the data tokenised to match.

``archlab.fit("hf:all-minilm-l6-v2", "shakespeare_genre")`` (and ``archlab train --model
hf:PATH``) trains the registry model ``hf_classifier`` with ``source=SOURCE``. A dataset given by
name whose loader takes a ``tokenizer`` option is loaded with SOURCE's tokenizer (recorded in
the run's config.yaml, so ``evaluate`` and ``predict`` reload the same tokens); a DataBundle
must already be tokenised by it.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from archlab.data.base import DataBundle
from archlab.errors import ConfigError

PREFIX = "hf:"
REGISTRY_NAME = "hf_classifier"


def is_hf_name(model: Any) -> bool:
    return isinstance(model, str) and model.startswith(PREFIX)


def _loader_takes_tokenizer(data: str) -> bool:
    from archlab.data.bundled import is_bundled_name, loader_of

    return is_bundled_name(data) and "tokenizer" in inspect.signature(loader_of(data)).parameters


def resolve_hf_name(
    model: str, data: DataBundle | str, overrides: dict[str, Any] | None, data_spec: dict[str, Any] | None
) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    """(registry name, model overrides, data spec) for an ``hf:SOURCE`` model name."""
    source = model[len(PREFIX) :]
    if not source:
        raise ConfigError("model 'hf:' needs a source: hf:all-minilm-l6-v2 or hf:PATH/TO/DIRECTORY")
    if Path(source).expanduser().is_dir():
        source = str(Path(source).expanduser().resolve())  # the run reloads from any working directory
    overrides = {**(overrides or {}), "source": source}
    if isinstance(data, DataBundle):
        have = data.info.get("tokenizer")
        if have is not None and have != source:
            raise ConfigError(
                f"{model} needs data tokenised by {source!r}; dataset {data.name!r} is tokenised by {have!r} "
                f"(load it with tokenizer={source!r})"
            )
        return REGISTRY_NAME, overrides, data_spec
    spec = dict(data_spec or {"name": str(data)})
    options = dict(spec.get("options") or {})
    if _loader_takes_tokenizer(str(data)):
        options.setdefault("tokenizer", source)
    spec["options"] = options
    return REGISTRY_NAME, overrides, spec
