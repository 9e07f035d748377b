"""Scaling knobs per model family: which config fields make a model wider or deeper.

Auto-sizing (:mod:`archlab.advise.autosize`) turns a budget into a config by moving these
knobs. Each family lists its knobs here, keyed by ``ModelEntry.family``; a knob whose field the
preset's config does not have is skipped, so one family table serves every config class of the
family (``ResNetConfig`` and ``ResNet1DConfig`` both read the ``resnet`` row).

This table lives in :mod:`archlab.advise` rather than in each family's ``register(...)`` call
because the model files are owned elsewhere; a registry entry that declares its own ``knobs``
(``{"field": "width" | "depth"}``) is used instead of this table.

Kinds of knob:

- ``scale``: an int field, or every element of a list field, is multiplied (``d_model``,
  ``hidden_sizes``, ``channels``);
- ``repeat``: depth as an int (``n_layers``) or a list of per-stage repeat counts (ResNet
  ``layers``), multiplied by the depth factor;
- ``length``: depth as the length of a list (an MLP's ``hidden_sizes``, a TCN's ``channels``):
  the last element is repeated or the list is cut.

Constraints between fields (attention heads divide ``d_model``; group norm wants multiples of its
group count) are the ``fix`` of each family, applied after every move.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Role = Literal["width", "depth"]
Kind = Literal["scale", "repeat", "length"]


@dataclass(frozen=True)
class Knob:
    """One config field that scales a model.

    Attributes:
        field: the config field.
        role: ``width`` or ``depth``.
        kind: ``scale`` (multiply the int / every list element), ``repeat`` (multiply a repeat
            count) or ``length`` (change a list's length).
        minimum, maximum: bounds of the value (each element for lists).
        multiple_of: widths are rounded to a multiple of this (above ``2 * multiple_of``).
    """

    field: str
    role: Role
    kind: Kind = "scale"
    minimum: int = 1
    maximum: int = 65536
    multiple_of: int = 1


def _w(name: str, minimum: int = 1, multiple_of: int = 1) -> Knob:
    return Knob(name, "width", "scale", minimum=minimum, multiple_of=multiple_of)


def _d(name: str, kind: Kind = "repeat", minimum: int = 1, maximum: int = 128) -> Knob:
    return Knob(name, "depth", kind, minimum=minimum, maximum=maximum)


def _heads_divide_d_model(cfg: dict[str, Any]) -> dict[str, Any]:
    """Attention heads must divide ``d_model`` (as multi-head attention requires); keep >= 8 dims per head."""
    d = int(cfg.get("d_model") or 0)
    heads = int(cfg.get("n_heads") or 1)
    if d <= 0:
        return cfg
    if d % 2 and cfg.get("pos") in ("rotary", "sinusoidal"):
        d += 1  # rotary / sinusoidal positions pair up dimensions
    while heads > 1 and (d % heads or d // heads < 8):
        heads -= 1
    return {**cfg, "d_model": d, "n_heads": heads}


def _diffusion_groups(cfg: dict[str, Any]) -> dict[str, Any]:
    groups = int(cfg.get("groups") or 1)
    if "base_channels" in cfg and groups > 1:
        cfg = {**cfg, "base_channels": max(groups, round(cfg["base_channels"] / groups) * groups)}
    return cfg


#: family -> knobs. Width knobs move together under one multiplier, depth knobs under one factor.
FAMILY_KNOBS: dict[str, tuple[Knob, ...]] = {
    "mlp": (_w("hidden_sizes"), _d("hidden_sizes", "length", maximum=32)),
    "cnn": (_w("channels"), _w("hidden_sizes"), _d("convs_per_stage", maximum=8)),
    "resnet": (_w("widths"), _w("stem_width"), _d("layers", maximum=64)),
    "transformer": (_w("d_model", minimum=8), _w("d_ff", minimum=8), _d("n_layers"), _d("n_decoder_layers")),
    "vit": (_w("d_model", minimum=8), _w("d_ff", minimum=8), _d("n_layers")),
    "rnn": (_w("hidden_size"), _w("embed_dim"), _d("n_layers", maximum=16)),
    "tcn": (_w("channels"), _d("channels", "length", maximum=16)),
    "ssm": (_w("d_model", minimum=4), _d("n_layers", maximum=64)),
    "gnn": (_w("hidden_sizes"), _d("hidden_sizes", "length", maximum=8)),
    "unet": (_w("base_width", multiple_of=8),),
    "autoencoder": (_w("hidden_sizes"), _w("channels")),
    "vae": (_w("hidden_sizes"), _w("channels")),
    "siamese": (_w("hidden_sizes"), _w("channels"), _w("embed_dim")),
    "recsys": (_w("embed_dim"), _w("bottom_mlp"), _w("top_mlp"), _w("hidden_sizes")),
    "gan": (_w("g_hidden"), _w("d_hidden"), _w("g_channels"), _w("d_channels")),
    "diffusion": (_w("hidden"), _w("base_channels", minimum=8), _w("time_dim"), _d("n_layers", maximum=32)),
    "flow": (_w("hidden"), _w("hidden_channels"), _d("n_couplings", maximum=64)),
}

#: family -> constraint fixer applied after each move.
FAMILY_FIX: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "transformer": _heads_divide_d_model,
    "vit": _heads_divide_d_model,
    "diffusion": _diffusion_groups,
}


def knobs_for(entry, config: dict[str, Any] | None = None) -> tuple[Knob, ...]:
    """The knobs of a registry entry whose fields its config has (and, with ``config``, are set).

    A registry entry that declares ``knobs`` (field -> role) wins over the family table.
    """
    fields = set(entry.config.model_fields)
    if entry.knobs:
        knobs = tuple(
            Knob(f, "width" if role == "width" else "depth", "scale" if role == "width" else "repeat")
            for f, role in entry.knobs.items()
            if role in ("width", "depth")
        )
    else:
        knobs = FAMILY_KNOBS.get(entry.family, ())
    out = []
    for k in knobs:
        if k.field not in fields:
            continue
        if config is not None:
            value = config.get(k.field)
            if value is None or (isinstance(value, list) and not value):
                continue
        out.append(k)
    return tuple(out)


def _round_width(value: float, knob: Knob) -> int:
    v = max(knob.minimum, int(round(value)))
    m = knob.multiple_of
    if m > 1 and v > 2 * m:
        v = int(round(v / m)) * m
    elif v >= 128:
        v = int(round(v / 8)) * 8  # hardware-friendly widths once they are large
    return min(knob.maximum, v)


def apply(
    knobs: tuple[Knob, ...], base: dict[str, Any], width: float, depth: float, family: str = ""
) -> dict[str, Any]:
    """``base`` with every width knob times ``width`` and every depth knob times ``depth``.

    Depth is applied first (a ``length`` knob changes the list that widths then scale).
    """
    cfg = dict(base)
    for k in knobs:
        if k.role != "depth":
            continue
        value = base.get(k.field)
        if k.kind == "length" and isinstance(value, list) and value:
            n = min(k.maximum, max(k.minimum, int(round(len(value) * depth))))
            cfg[k.field] = (list(value) + [value[-1]] * n)[:n]
        elif isinstance(value, list):
            cfg[k.field] = [min(k.maximum, max(k.minimum, int(round(v * depth)))) for v in value]
        elif isinstance(value, int):
            cfg[k.field] = min(k.maximum, max(k.minimum, int(round(value * depth))))
    for k in knobs:
        if k.role != "width":
            continue
        value = cfg.get(k.field)
        if isinstance(value, list):
            cfg[k.field] = [_round_width(v * width, k) for v in value]
        elif isinstance(value, int):
            cfg[k.field] = _round_width(value * width, k)
    fix = FAMILY_FIX.get(family)
    return fix(cfg) if fix else cfg


def knob_values(knobs: tuple[Knob, ...], cfg: dict[str, Any]) -> dict[str, Any]:
    """The knob fields of ``cfg`` (plus ``n_heads`` when present), for tables and cache keys."""
    out = {k.field: cfg.get(k.field) for k in knobs}
    if "n_heads" in cfg and any(k.field == "d_model" for k in knobs):
        out["n_heads"] = cfg["n_heads"]
    return out


def max_width(knobs: tuple[Knob, ...], cfg: dict[str, Any]) -> int:
    """The largest width value among the width knobs of ``cfg`` (1 when none)."""
    values = []
    for k in knobs:
        if k.role == "width":
            v = cfg.get(k.field)
            values.extend(v if isinstance(v, list) else [v] if isinstance(v, int) else [])
    return max(values or [1])
