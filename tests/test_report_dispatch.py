"""Renderers are chosen by the result's type: registered types render, their subclasses render
as they do, and an unregistered type gets one clear error."""

from __future__ import annotations

from dataclasses import dataclass, fields

import pytest

import archlab
from archlab.analysis.summary import ModelSummary
from archlab.errors import ConfigError
from archlab.report import formats, render
from archlab.report.dispatch import register_renderers
from archlab.report.formats import renderers


@dataclass
class _Tally:
    count: int

    def to_dict(self) -> dict[str, int]:
        return {"count": self.count}


class _Untallied:
    pass


class _LocalSummary(ModelSummary):
    """A user's own summary type, drawn as the base one is."""


def test_a_registered_type_renders_in_its_formats_and_writes_by_extension(tmp_path):
    register_renderers(_Tally, md=lambda t: f"**{t.count}**\n", text=lambda t: str(t.count))
    assert render(_Tally(3), "markdown") == "**3**\n"
    assert formats(_Tally(3)) == ["md", "text", "json"]
    assert render(_Tally(4), out=tmp_path / "t.md").read_text() == "**4**\n"
    with pytest.raises(ConfigError, match=r"a _Tally renders as md, text, json; got 'svg'"):
        render(_Tally(3), "svg")


def test_a_subclass_renders_as_its_base():
    s = archlab.summary("mlp_tabular")
    sub = _LocalSummary(**{f.name: getattr(s, f.name) for f in fields(s) if f.init})
    assert renderers(sub) == renderers(s) and set(renderers(s)) == {"rich", "md", "html", "text"}
    assert render(sub, "md") == render(s, "md")


def test_an_unregistered_type_is_refused_with_its_name():
    with pytest.raises(ConfigError, match="archlab does not know how to render a _Untallied"):
        render(_Untallied(), "md")
    assert formats(_Untallied()) == [] and not renderers(_Untallied())
