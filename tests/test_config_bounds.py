"""Bounded configs: for every registered model, random and hostile field values either raise
ConfigError or give a config that builds on the meta device within seconds and (when small
enough to run here) runs its own ``example_input()``.

The property test draws at least 1,000 examples in total (ARCHLAB_HYPOTHESIS_EXAMPLES raises
it); each example picks a registered model and draws every config field: mostly small valid
values, sometimes the field's default, a large value inside its bound, or a hostile one
(negative, past the bound, 2**63, 10**30, a bool, a string, a float, NaN).
"""

from __future__ import annotations

import math
import os
import time
import typing

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic.fields import FieldInfo

import archlab
from archlab.config import MAX_DEPTH, MAX_INT, ArchConfig
from archlab.errors import ConfigError
from archlab.registry import get_entry

NAMES = archlab.list_models()
EXAMPLES = int(os.environ.get("ARCHLAB_HYPOTHESIS_EXAMPLES", "1000"))
BUILD_SECONDS = 5.0  # "no build on meta takes more than a few seconds"
RUN_PARAMS = 500_000  # run example_input() for real when the model is at most this big
HOSTILE_INTS = [-1, 0, 2**31, 2**63, 2**64 + 1, 10**30, True, False, "7", "many", 2.5, None, [3]]
MODES = ["small"] * 12 + ["default"] * 4 + ["large", "hostile"]


def _bounds(metadata) -> tuple[int, int | None]:
    lo, hi = 0, None
    for m in metadata:
        if getattr(m, "ge", None) is not None:
            lo = m.ge
        if getattr(m, "gt", None) is not None:
            lo = m.gt + 1
        if getattr(m, "le", None) is not None:
            hi = m.le
        if getattr(m, "lt", None) is not None:
            hi = m.lt - 1
    return int(lo), None if hi is None else int(hi)


def _item_bounds(annotation) -> tuple[int, int | None, int, int]:
    """(lo, hi) of a list field's items and its (min, max) length."""
    item = typing.get_args(annotation)[0]
    lo, hi = _bounds(getattr(item, "__metadata__", ()))
    return lo, hi, 0, 6


def _draw_int(data, lo: int, hi: int | None, default, mode: str):
    if mode == "small":
        return data.draw(st.integers(lo, min(lo + 6, hi if hi is not None else lo + 6)))
    if mode == "default" and isinstance(default, int):
        return default
    if mode == "large":
        return data.draw(st.integers(lo, hi if hi is not None else 2 * MAX_INT))
    return data.draw(st.sampled_from([lo - 1, (hi or MAX_INT) + 1, *HOSTILE_INTS]))


def _draw_field(data, field: FieldInfo, mode: str) -> tuple[object, bool]:
    """A value for ``field`` and whether it is small (a real build and forward stay cheap)."""
    ann = field.annotation
    args = typing.get_args(ann)
    origin = typing.get_origin(ann)
    if origin is typing.Union or type(ann).__name__ == "UnionType":  # Optional[X]
        if mode == "hostile" and data.draw(st.booleans()):
            return None, True
        inner = [a for a in args if a is not type(None)]
        sub = FieldInfo.from_annotation(inner[0])
        sub.metadata = field.metadata + sub.metadata
        return _draw_field(data, sub, mode)
    if origin is typing.Literal:
        choices = list(args) + (["bogus", True, 3] if mode == "hostile" else [])
        return data.draw(st.sampled_from(choices)), True
    if ann is bool:
        return data.draw(st.sampled_from([True, False] + ([1, "yes", None] if mode == "hostile" else []))), True
    if ann is int:
        lo, hi = _bounds(field.metadata)
        return _draw_int(data, lo, hi, field.default, mode), mode in ("small", "default")
    if ann is float:
        lo = next((m.ge for m in field.metadata if getattr(m, "ge", None) is not None), 0.0)
        if mode == "hostile":
            return data.draw(st.sampled_from([-1.0, math.nan, math.inf, 1e308, True, "x"])), True
        return data.draw(st.floats(lo, lo + 0.9, allow_nan=False)), True
    if origin is list:
        item = args[0] if args else None
        if typing.get_origin(item) is list:  # list of lists (field crosses): small groups
            return data.draw(st.lists(st.lists(st.integers(-1, 4), max_size=5), max_size=3)), True
        lo, hi, _, _ = _item_bounds(ann)
        if mode == "hostile":
            return data.draw(st.sampled_from([[], [0], [True], [10**30], [2**63], [1] * 1000, "1,2", None])), True
        if mode == "default":
            return field.get_default(call_default_factory=True), True
        n = data.draw(st.integers(0, 4))
        small = mode == "small"
        return [_draw_int(data, max(lo, 1), hi, None, "small" if small else "large") for _ in range(n)], small
    return field.get_default(call_default_factory=True), True


def _tensors(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    return []


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
@given(st.data())
def test_random_configs_only_raise_config_error_and_build_fast(data):
    name = data.draw(st.sampled_from(NAMES))
    entry = get_entry(name)
    overrides, small = {}, True
    for field_name, field in entry.config.model_fields.items():
        mode = data.draw(st.sampled_from(MODES))
        value, is_small = _draw_field(data, field, mode)
        overrides[field_name] = value
        small &= is_small
    try:
        config = entry.make_config(overrides)
    except ConfigError:
        return
    start = time.process_time()  # CPU time: a loaded CI machine does not fail the test
    model = archlab.create_from_config(config, name=name, device="meta")
    seconds = time.process_time() - start
    assert seconds < BUILD_SECONDS, f"{name} took {seconds:.1f}s to build on meta with {overrides}"
    if not small or model.num_params() > RUN_PARAMS:
        return
    model = archlab.create_from_config(config, name=name).eval()
    with torch.no_grad():
        out = model(*model.example_input(batch_size=2))
    assert _tensors(out), f"{name} returned no tensor for {overrides}"


# -- the bounds themselves --------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_every_integer_field_is_bounded(name):
    config: type[ArchConfig] = get_entry(name).config
    for field_name, field in config.model_fields.items():
        ann = field.annotation
        inner = (
            [a for a in typing.get_args(ann) if a is not type(None)]
            if typing.get_origin(ann) is typing.Union
            else [ann]
        )
        if inner and inner[0] is int:
            assert _bounds(field.metadata)[1] is not None, f"{config.__name__}.{field_name} has no upper bound"
        if typing.get_origin(inner[0]) is list:
            max_len = next((m.max_length for m in field.metadata if getattr(m, "max_length", None)), None)
            assert max_len is not None, f"{config.__name__}.{field_name} has no maximum length"


@pytest.mark.parametrize(
    "value,match",
    [
        (True, "expected a number, not a bool"),
        (2**63, "less than or equal to"),
        (10**30, "less than or equal to"),
        (MAX_DEPTH + 1, f"less than or equal to {MAX_DEPTH}"),
    ],
)
def test_hostile_layer_counts_are_config_errors(value, match):
    with pytest.raises(ConfigError, match=match) as info:
        archlab.create("gpt_nano", n_layers=value, device="meta")
    assert "n_layers" in str(info.value)


def test_bools_are_not_ints_in_lists_either():
    with pytest.raises(ConfigError, match="hidden_sizes=.*not a bool"):
        archlab.create("mlp_tabular", hidden_sizes=[True, 4])
    assert archlab.create("mlp_tabular", hidden_sizes=[]).num_params() > 0  # an empty list is allowed here
    with pytest.raises(ConfigError, match="channels"):
        archlab.create("cnn_digits", channels=[])  # ... but not where a stage is needed


def test_resnet_total_blocks_are_bounded():
    with pytest.raises(ConfigError, match="blocks; at most"):
        archlab.create("resnet18", layers=[128] * 5, widths=[8] * 5, device="meta")
