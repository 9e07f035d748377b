"""Typed, validated model configs.

Every family defines one pydantic config deriving from :class:`ArchConfig`. Unknown keys are
rejected (``extra="forbid"``) with the allowed keys named; range errors name the field and the
value. Configs round-trip through YAML and JSON, and take typed dotted overrides from strings
(``["n_layers=4", "hidden_sizes=[256,128]"]``) as the CLI's ``--set`` does.
"""

from __future__ import annotations

import difflib
import json
from typing import Any, Iterable, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from archlab.errors import ConfigError

C = TypeVar("C", bound="ArchConfig")

# Weight-initialisation schemes a family may offer (see archlab.layers.init).
InitScheme = Literal["default", "kaiming", "xavier", "orthogonal", "normal"]
Activation = Literal["relu", "gelu", "silu", "tanh", "leaky_relu", "sigmoid", "identity"]


class ArchConfig(BaseModel):
    """Base of every model config: strict keys, validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

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
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

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
            lines.append(
                f"unknown key {loc!r}{hint} allowed keys: {', '.join(allowed)}"
            )
        elif kind in ("value_error", "assertion_error"):
            msg = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
            lines.append(msg if err["loc"] == () else f"{loc}: {msg}")
        else:
            value = err.get("input")
            lines.append(f"{loc}={value!r}: {err['msg']}")
    return f"{cls.__name__}: " + "; ".join(lines)
