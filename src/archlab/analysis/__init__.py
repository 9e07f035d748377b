"""See a model: layer-by-layer summary (shapes, parameters, FLOPs/MACs, memory, receptive field),
data-flow diagrams (Mermaid, DOT, SVG without system packages) and comparisons."""

from archlab.analysis.compare_models import Comparison, compare
from archlab.analysis.diagram import ModelGraph, diagram
from archlab.analysis.flops import register_module_flops
from archlab.analysis.memory import MemoryEstimate
from archlab.analysis.summary import LayerRow, ModelSummary, summary

__all__ = [
    "summary",
    "ModelSummary",
    "LayerRow",
    "MemoryEstimate",
    "diagram",
    "ModelGraph",
    "compare",
    "Comparison",
    "register_module_flops",
]
