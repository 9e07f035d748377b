"""The public API is fully typed: every function ``import archlab`` exposes annotates each
parameter and its return, and the package ships ``py.typed`` so type checkers read them."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import archlab

FUNCTIONS = [n for n in archlab.__all__ if inspect.isfunction(getattr(archlab, n))]


def test_public_names_include_the_functions():
    assert {"create", "fit", "summary", "recommend", "benchmark", "export", "render"} <= set(FUNCTIONS)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_public_function_is_fully_annotated(name):
    fn = inspect.unwrap(getattr(archlab, name))
    sig = inspect.signature(fn)
    missing = [p.name for p in sig.parameters.values() if p.annotation is inspect.Parameter.empty]
    assert not missing, f"archlab.{name}: parameters without a type: {missing}"
    assert sig.return_annotation is not inspect.Signature.empty, f"archlab.{name} has no return type"


def test_py_typed_ships_with_the_package():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    root = Path(archlab.__file__).parent
    assert (root / "py.typed").is_file()
    pyproject = tomllib.loads((root.parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["archlab"]
