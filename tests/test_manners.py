"""Manners (issue 15): a light CLI start, a lazy package that still shows every name, real
signatures on the top-level functions, short reprs."""

from __future__ import annotations

import inspect
import subprocess
import sys

import torch

import archlab
from archlab.data.base import DataBundle, Split


def test_cli_start_imports_neither_torch_nor_pydantic():
    """``archlab --help`` builds every command without the heavy layers: they load inside commands."""
    code = (
        "import sys, archlab.cli.main as m; m._register_commands(); "
        "print(','.join(k for k in ('torch', 'pydantic', 'numpy') if k in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_lazy_package_keeps_every_public_name():
    for name in archlab.__all__:
        assert getattr(archlab, name) is not None, name
    assert set(archlab.__all__) <= set(dir(archlab))
    assert set(archlab.__all__) == {"__version__", *archlab._EXPORTS}  # every lazy name is public
    assert archlab.report.render is archlab.render  # subpackages still resolve as attributes
    from archlab import ConfigError, fit  # noqa: F401  (the from-import form works too)


def test_top_level_functions_show_their_real_options():
    for fn, options in (
        (archlab.summary, {"input_shape", "depth", "device", "batch_size", "overrides"}),
        (archlab.diagram, {"input_shape", "depth", "collapse_repeats"}),
        (archlab.compare, {"input_shape", "device", "batch_size"}),
        (archlab.benchmark, {"batch_sizes", "backends", "threads"}),
        (archlab.fit, {"model_args", "out_dir", "run_name"}),
    ):
        params = inspect.signature(fn).parameters
        assert options <= set(params), fn.__name__
    for fn in (archlab.summary, archlab.diagram, archlab.compare, archlab.benchmark, archlab.evaluate):
        kinds = {p.kind for p in inspect.signature(fn).parameters.values()}
        assert inspect.Parameter.VAR_KEYWORD not in kinds, fn.__name__


def test_databundle_repr_is_one_short_line():
    big = Split((torch.randn(10_000, 32),), torch.zeros(10_000, dtype=torch.long))
    bundle = DataBundle("big", "tabular", "classification", big, info={"normalization": {"mean": [0.0] * 32}})
    text = repr(bundle)
    assert "\n" not in text and len(text) < 200 and "train=10000" in text
