"""Typed, validated model configs.

Every family defines one pydantic config deriving from :class:`ArchConfig`. Unknown keys are
rejected (``extra="forbid"``) with the allowed keys named; range errors name the field and the
value. Configs round-trip through YAML and JSON, and take typed dotted overrides from strings
(``["n_layers=4", "hidden_sizes=[256,128]"]``) as the CLI's ``--set`` does.

Bounds. Every integer field of a model config has an upper bound, so that any config that
validates builds (on the meta device in well under a few seconds) and runs its own
``example_input()``; a value past a bound is a :class:`ConfigError` naming the field:

- :data:`Size` - any count or size without a tighter bound (vocabularies, classes, features,
  timesteps, hash buckets): ``<= MAX_INT`` (2**20).
- :data:`Width` - channels, hidden units, embedding widths, heads: ``<= MAX_WIDTH`` (2**16), so
  a weight's element count (``width * width * kernel``) stays far inside int64.
- :data:`Depth` - layers, blocks or couplings of one stack: ``<= MAX_DEPTH`` (128; GPT-3 has 96).
- :data:`Extent` - image sizes, sequence lengths and kernels of ``example_input``:
  ``<= MAX_EXTENT`` (4096).
- :data:`PositiveInts` / :data:`Widths` - lists of widths (non-empty / possibly empty), at most
  ``MAX_STAGES`` (32) entries.

Bools are not numbers: ``n_layers: true`` is refused, not read as 1.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from collections.abc import Iterable
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from archlab.errors import ConfigError

C = TypeVar("C", bound="ArchConfig")

# Weight-initialisation schemes a family may offer (see archlab.layers.init).
InitScheme = Literal["default", "kaiming", "xavier", "orthogonal", "normal"]
Activation = Literal["relu", "gelu", "silu", "tanh", "leaky_relu", "sigmoid", "identity"]

# -- bounded integer types (see the module docstring) ---------------------------------------------

MAX_INT = 2**20
MAX_WIDTH = 2**16
MAX_DEPTH = 128
MAX_EXTENT = 4096
MAX_STAGES = 32

#: A count or size without a tighter bound: ``<= MAX_INT``.
Size = Annotated[int, Field(le=MAX_INT)]
#: Channels, hidden units, embedding widths: ``<= MAX_WIDTH``.
Width = Annotated[int, Field(le=MAX_WIDTH)]
#: Layers / blocks / couplings of one stack: ``<= MAX_DEPTH``.
Depth = Annotated[int, Field(le=MAX_DEPTH)]
#: Image sizes, sequence lengths, kernel sizes: ``<= MAX_EXTENT``.
Extent = Annotated[int, Field(le=MAX_EXTENT)]


def int_list(high: int, *, low: int = 1, min_length: int = 1, max_length: int = MAX_STAGES) -> Any:
    """A list type of ints in ``[low, high]`` with ``min_length..max_length`` entries."""
    return Annotated[list[Annotated[int, Field(ge=low, le=high)]], Field(min_length=min_length, max_length=max_length)]


#: A non-empty list of positive widths (stage channels), at most MAX_STAGES long.
PositiveInts = int_list(MAX_WIDTH)
#: A possibly empty list of positive widths (e.g. an MLP head with no hidden layer).
Widths = int_list(MAX_WIDTH, min_length=0)


class ArchConfig(BaseModel):
    """Base of every model config: strict keys, validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    @model_validator(mode="before")
    @classmethod
    def _bools_are_not_numbers(cls, data: Any) -> Any:
        """Refuse ``True``/``False`` for a numeric field (pydantic would read True as 1)."""
        if isinstance(data, dict):
            for name, value in data.items():
                field = cls.model_fields.get(name) if isinstance(name, str) else None
                if field is not None and _holds_bool(value) and not _allows_bool(field.annotation):
                    raise ValueError(f"{name}={value!r}: expected a number, not a bool")
        return data

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def build(cls: type[C], data: dict[str, Any] | None = None, **kwargs: Any) -> C:
        """Validate ``data`` / ``kwargs`` into a config; errors become :class:`ConfigError`."""
        merged = {**(data or {}), **kwargs}
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(cls, exc, merged)) from None

    def replace(self: C, **changes: Any) -> C:
        """A validated copy with ``changes`` applied."""
        return type(self).build({**self.to_dict(), **changes})

    def with_overrides(self: C, overrides: Iterable[str]) -> C:
        """A validated copy with ``key=value`` string overrides applied (dotted keys nest)."""
        data = self.to_dict()
        for item in overrides:
            key, value = parse_override(item)
            set_dotted(data, key, value)
        return type(self).build(data)

    # -- io -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_yaml(self) -> str:
        return str(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{cls.__name__}: invalid JSON ({exc})") from None
        return cls.build(data)

    @classmethod
    def from_yaml(cls: type[C], text: str) -> C:
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{cls.__name__}: invalid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}: expected a mapping; got {type(data).__name__}")
        return cls.build(data)


def _holds_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, (list, tuple)):
        return any(_holds_bool(v) for v in value)
    return False


def _allows_bool(annotation: Any) -> bool:
    """Whether a field's type admits a bool anywhere (``bool``, ``bool | None``, ``Any``)."""
    if annotation is bool or annotation is Any:
        return True
    if typing.get_origin(annotation) is Literal:
        return any(isinstance(a, bool) for a in typing.get_args(annotation))
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is Annotated:
        return _allows_bool(args[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list, tuple, dict):
        return any(_allows_bool(a) for a in args)
    return False


# -- overrides ----------------------------------------------------------------------------------


def parse_override(item: str) -> tuple[str, Any]:
    """Split ``"key=value"`` and parse the value as YAML (ints, floats, lists, bools, null).

    >>> parse_override("hidden_sizes=[256,128]")
    ('hidden_sizes', [256, 128])
    """
    if not isinstance(item, str) or "=" not in item:
        raise ConfigError(f"override must look like key=value; got {item!r}")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override has an empty key: {item!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # let the typed field decide; a bad type is reported by validation
    return key, value


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Parse several overrides into a nested dict."""
    out: dict[str, Any] = {}
    for item in items:
        key, value = parse_override(item)
        set_dotted(out, key, value)
    return out


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(d, "a.b", 1)`` sets ``d["a"]["b"] = 1``, creating mappings on the way."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {key!r}: {part!r} is {child!r}, not a mapping")
        node = child
    node[parts[-1]] = value


# -- error formatting ---------------------------------------------------------------------------


def _field_names(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def format_validation_error(cls: type[BaseModel], exc: ValidationError, data: Any) -> str:
    """Turn pydantic's error list into lines naming field, value and what is allowed."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<config>"
        kind = err["type"]
        if kind == "extra_forbidden":
            bad = str(err["loc"][-1])
            allowed = _field_names(cls)
            close = difflib.get_close_matches(bad, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            lines.append(f"unknown key {loc!r}{hint} allowed keys: {', '.join(allowed)}")
        elif kind in ("value_error", "assertion_error"):
            msg = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
            lines.append(msg if err["loc"] == () else f"{loc}: {msg}")
        else:
            value = err.get("input")
            lines.append(f"{loc}={value!r}: {err['msg']}")
    return f"{cls.__name__}: " + "; ".join(lines)
