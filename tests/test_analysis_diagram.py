"""Diagrams: structure (skip connections, collapsed repeats, shapes), well-formed renders, errors."""

import re
import xml.etree.ElementTree as ET

import pytest
from torch import nn

import archlab
from archlab.analysis.diagram import diagram
from archlab.errors import ConfigError, ShapeError


class Block(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.ff = nn.Linear(d, d)

    def forward(self, x):
        return x + self.ff(self.norm(x))  # residual


class Net(nn.Module):
    def __init__(self, n=6):
        super().__init__()
        self.inp = nn.Linear(8, 16)
        self.blocks = nn.ModuleList(Block() for _ in range(n))
        self.out = nn.Linear(16, 2)

    def forward(self, x):
        x = self.inp(x)
        for b in self.blocks:
            x = b(x)
        return self.out(x)


def check_mermaid(text: str) -> None:
    lines = text.strip().splitlines()
    assert lines[0].startswith("flowchart")
    declared = set(re.findall(r"^\s*(n\d+)[\[\(]", text, flags=re.M))
    edges = re.findall(r"^\s*(n\d+) -->(?:\|\"[^\"]*\"\|)? (n\d+)$", text, flags=re.M)
    assert edges, text
    for a, b in edges:
        assert a in declared and b in declared, (a, b)
    opens = sum(1 for line in lines if line.strip().startswith("subgraph"))
    closes = sum(1 for line in lines if line.strip() == "end")
    assert opens == closes


def test_repeats_collapse_at_block_level():
    g = diagram(Net(), input_shape=(2, 8), depth=1)
    labels = [n.type + (f" x {n.repeat}" if n.repeat > 1 else "") for n in g.nodes]
    assert "Block x 6" in labels
    assert sum(1 for n in g.nodes if n.type == "Block") == 1
    check_mermaid(archlab.render(g, "mermaid"))


def test_inner_level_shows_skip_connection_and_shapes():
    g = diagram(Net(), input_shape=(2, 8), depth=2)
    adds = [n for n in g.nodes if n.kind == "op" and n.type == "add"]
    assert len(adds) == 1  # one block drawn, inside its group
    preds = {e.src for e in g.edges if e.dst == adds[0].id}
    assert len(preds) == 2  # the residual and the ff branch both feed the add
    assert g.groups and any("Block x 6" in label for label in g.groups.values())
    assert all(e.shape == (2, 16) for e in g.edges if e.dst == adds[0].id)


def test_no_collapse_draws_every_block():
    g = diagram(Net(), input_shape=(2, 8), depth=1, collapse_repeats=False)
    assert sum(1 for n in g.nodes if n.type == "Block") == 6


def test_renders_parse():
    g = diagram(Net(), input_shape=(2, 8), depth=2)
    root = ET.fromstring(archlab.render(g, "svg"))
    assert root.tag.endswith("svg")
    assert len(root.findall(".//{http://www.w3.org/2000/svg}rect")) >= len(g.nodes)
    dot = archlab.render(g, "dot")
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    assert dot.count("->") == len(g.edges)
    check_mermaid(archlab.render(g, "mermaid"))


def test_save_picks_format_and_rejects_unknown(tmp_path):
    g = diagram(Net(2), input_shape=(2, 8), depth=1)
    for ext in ("svg", "mmd", "dot"):
        archlab.render(g, out=tmp_path / f"d.{ext}")
        assert (tmp_path / f"d.{ext}").stat().st_size > 0
    with pytest.raises(ConfigError, match=r"\.svg"):
        archlab.render(g, out=tmp_path / "d.png")


def test_untraceable_control_flow_still_diagrams():
    class Dynamic(nn.Module):  # data-dependent branch: fx cannot trace it
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            if x.shape[0] > 1 and x.dim() == 2:
                return self.a(x) * self.b(x)
            return self.a(x)

    g = diagram(Dynamic(), input_shape=(3, 4), depth=1)
    assert {"a", "b"} <= {n.name for n in g.nodes}
    assert any(n.kind == "op" and n.type == "mul" for n in g.nodes)


def test_bad_input_raises_model_shape_error():
    with pytest.raises(ShapeError, match="mlp_784_128_10"):
        diagram("mlp_784_128_10", input_shape=(2, 5))


def test_depth_must_be_positive():
    with pytest.raises(ConfigError, match="depth"):
        diagram(Net(), input_shape=(2, 8), depth=0)
