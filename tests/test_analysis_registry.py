"""Every registered model summarises and diagrams; its FLOP total agrees with FlopCounterMode."""

import re
import xml.etree.ElementTree as ET

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import archlab
from archlab.analysis import summary
from archlab.analysis.diagram import diagram

NAMES = archlab.list_models()


# Ops archlab counts that FlopCounterMode has no formula for (it counts them as 0). They are the
# only difference allowed between the two totals; the test prints them when a model uses them.
OURS_ONLY = {
    "aten._embedding_bag": "FlopCounterMode has no EmbeddingBag formula; archlab counts one add per looked-up element",
}


@pytest.mark.parametrize("name", NAMES)
def test_registry_model_summary_and_diagram(name, capsys):
    """Every registry model: parameters match the module, FLOPs are positive and equal
    FlopCounterMode's on the same device (meta, or cpu where the model needs real values),
    up to the ops listed in OURS_ONLY."""
    s = summary(name, depth=2)
    assert s.total_params == sum(p.numel() for p in archlab.create(name, device="meta").parameters())
    assert s.rows[0].name == name and s.flops > 0 and 0 < 2 * s.macs <= s.flops
    if s.device == "cpu":  # data-dependent ops (nonzero, .item()): the summary said so and ran on cpu
        assert any("ran on cpu" in n for n in s.notes)
    torch.manual_seed(0)
    model = archlab.create(name, device=s.device)
    args = tuple(a.to(s.device) if isinstance(a, torch.Tensor) else a for a in model.example_input())
    with FlopCounterMode(display=False) as fc:
        model(*args)
    ours_only = {k: v for k, v in s.flops_by_op.items() if k in OURS_ONLY}
    for op in ours_only:
        with capsys.disabled():
            print(f"\n{name}: {op} excluded from the comparison: {OURS_ONLY[op]}")
    assert s.flops - sum(ours_only.values()) == fc.get_total_flops()
    _check_diagram(name)


def _check_diagram(name):
    g = diagram(name, depth=2)
    mmd = archlab.render(g, "mermaid")
    assert mmd.startswith("flowchart")
    declared = set(re.findall(r"^\s*(n\d+)[\[\(]", mmd, flags=re.M))
    for a, b in re.findall(r"^\s*(n\d+) -->(?:\|\"[^\"]*\"\|)? (n\d+)$", mmd, flags=re.M):
        assert a in declared and b in declared
    ET.fromstring(archlab.render(g, "svg"))
