"""Mermaid, Graphviz DOT and SVG renders of a :class:`~archlab.analysis.diagram.ModelGraph`.

The SVG is laid out in pure Python (grandalf's Sugiyama layout), so no Graphviz install is
needed; the DOT text is there for people who have it.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from archlab.analysis.diagram import ModelGraph, Node
from archlab.report.dispatch import register_renderers
from archlab.report.format import fmt_count


def node_lines(n: Node) -> list[str]:
    if n.kind in ("input", "output", "op"):
        return [n.label]
    lines = [n.label or n.type, n.type + (f" x {n.repeat}" if n.repeat > 1 else "")]
    if n.params:
        lines.append(f"{fmt_count(n.params)} params" + (" each" if n.repeat > 1 else ""))
    return lines


def _group_tree(graph: ModelGraph):
    """children[group or None] -> (subgroups, nodes), groups nested as the nodes say."""
    members: dict[str | None, list] = {None: []}
    sub: dict[str | None, list[str]] = {None: []}
    for n in graph.nodes:
        parent = None
        for g in n.groups:
            members.setdefault(g, [])
            sub.setdefault(g, [])
            if g not in sub[parent]:
                sub[parent].append(g)
            parent = g
        members[parent].append(n)
    return members, sub


def _mm_text(s: str) -> str:
    return s.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def to_mermaid(graph: ModelGraph) -> str:
    out = ["flowchart TD"]
    members, sub = _group_tree(graph)

    def emit(group: str | None, indent: str) -> None:
        for n in members.get(group, []):
            text = "<br/>".join(_mm_text(line) for line in node_lines(n))
            shape = {"input": ('(["', '"])'), "output": ('(["', '"])'), "op": ('(("', '"))')}.get(n.kind, ('["', '"]'))
            out.append(f"{indent}{n.id}{shape[0]}{text}{shape[1]}")
        for g in sub.get(group, []):
            out.append(f'{indent}subgraph {g}["{_mm_text(graph.groups.get(g, g))}"]')
            emit(g, indent + "  ")
            out.append(f"{indent}end")

    emit(None, "  ")
    for e in graph.edges:
        out.append(f'  {e.src} -->|"{e.label}"| {e.dst}' if e.label else f"  {e.src} --> {e.dst}")
    return "\n".join(out) + "\n"


def _dot_text(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


def to_dot(graph: ModelGraph) -> str:
    out = [
        f'digraph "{_dot_text(graph.model)}" {{',
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    members, sub = _group_tree(graph)

    def emit(group: str | None, indent: str) -> None:
        for n in members.get(group, []):
            label = "\\n".join(_dot_text(line) for line in node_lines(n))
            shape = {"input": "oval", "output": "oval", "op": "circle"}.get(n.kind, "box")
            out.append(f'{indent}{n.id} [label="{label}", shape={shape}];')
        for g in sub.get(group, []):
            out.append(f"{indent}subgraph cluster_{g} {{")
            out.append(f'{indent}  label="{_dot_text(graph.groups.get(g, g))}"; style=dashed;')
            emit(g, indent + "  ")
            out.append(f"{indent}}}")

    emit(None, "  ")
    for e in graph.edges:
        out.append(f'  {e.src} -> {e.dst} [label="{_dot_text(e.label)}"];')
    out.append("}")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- SVG

_CHAR_W, _LINE_H, _PAD = 7.0, 15.0, 8.0
_FILL = {"input": "#e8f5e9", "output": "#e8f5e9", "op": "#fff3e0", "module": "#eef3fb"}


class _VView:
    def __init__(self, w: float, h: float):
        self.w, self.h, self.xy = w, h, (0.0, 0.0)


class _EView:
    def __init__(self) -> None:
        self.points: list[tuple[float, float]] = []

    def setpath(self, pts) -> None:
        self.points = [tuple(p) for p in pts]


def _layout(graph: ModelGraph):
    from archlab.errors import require

    require("grandalf", "viz", "SVG diagrams")
    from grandalf.graphs import Edge as GEdge
    from grandalf.graphs import Graph, Vertex
    from grandalf.layouts import SugiyamaLayout

    verts = {}
    for n in graph.nodes:
        lines = node_lines(n)
        w = max(len(line) for line in lines) * _CHAR_W + 2 * _PAD
        h = len(lines) * _LINE_H + 2 * _PAD
        v = Vertex(n.id)
        v.view = _VView(w, h)
        verts[n.id] = v
    gedges = []
    for e in graph.edges:
        ge = GEdge(verts[e.src], verts[e.dst])
        ge.view = _EView()
        ge.info = e
        gedges.append(ge)
    g = Graph(list(verts.values()), gedges)
    x_off = 0.0
    for comp in g.C:
        if len(comp.sV) == 1 and not comp.sE:
            v = comp.sV[0]
            v.view.xy = (0.0, 0.0)
        else:
            sug = SugiyamaLayout(comp)
            sug.init_all()
            sug.draw()
        vs = list(comp.sV)
        min_x = min(v.view.xy[0] - v.view.w / 2 for v in vs)
        max_x = max(v.view.xy[0] + v.view.w / 2 for v in vs)
        dx = x_off - min_x
        for v in vs:
            v.view.xy = (v.view.xy[0] + dx, v.view.xy[1])
        for e in comp.sE:
            if getattr(e.view, "points", None):
                e.view.points = [(x + dx, y) for x, y in e.view.points]
        x_off += (max_x - min_x) + 40
    for e in gedges:
        if not e.view.points:
            a, b = e.v[0].view, e.v[1].view
            e.view.points = [a.xy, b.xy]
    return verts, gedges


def to_svg(graph: ModelGraph) -> str:
    verts, gedges = _layout(graph)
    by_id = {n.id: n for n in graph.nodes}
    xs = [v.view.xy[0] - v.view.w / 2 for v in verts.values()] + [v.view.xy[0] + v.view.w / 2 for v in verts.values()]
    ys = [v.view.xy[1] - v.view.h / 2 for v in verts.values()] + [v.view.xy[1] + v.view.h / 2 for v in verts.values()]
    margin = 40.0
    x0, y0 = (min(xs) if xs else 0) - margin, (min(ys) if ys else 0) - margin
    width = (max(xs) - min(xs) if xs else 0) + 2 * margin + 120
    height = (max(ys) - min(ys) if ys else 0) + 2 * margin
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="{x0:.1f} {y0:.1f} {width:.1f} {height:.1f}" font-family="Helvetica, Arial, sans-serif" font-size="12">',
        f"<title>{escape(graph.model)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
    ]
    # repeat groups: dashed boxes around their nodes
    for gid, label in graph.groups.items():
        vs = [verts[n.id].view for n in graph.nodes if gid in n.groups]
        if not vs:
            continue
        gx0 = min(v.xy[0] - v.w / 2 for v in vs) - 14
        gy0 = min(v.xy[1] - v.h / 2 for v in vs) - 24
        gx1 = max(v.xy[0] + v.w / 2 for v in vs) + 14
        gy1 = max(v.xy[1] + v.h / 2 for v in vs) + 10
        parts.append(
            f'<rect x="{gx0:.1f}" y="{gy0:.1f}" width="{gx1 - gx0:.1f}" height="{gy1 - gy0:.1f}" '
            'fill="none" stroke="#8a8a8a" stroke-dasharray="6 4" rx="6"/>'
        )
        parts.append(
            f'<text x="{gx0 + 6:.1f}" y="{gy0 + 14:.1f}" fill="#555" font-weight="bold">{escape(label)}</text>'
        )
    for ge in gedges:
        pts = ge.view.points
        a, b = ge.v[0].view, ge.v[1].view
        # clip the ends to the boxes' top/bottom edges
        pts = list(pts)
        pts[0] = (pts[0][0], a.xy[1] + (a.h / 2 if pts[-1][1] >= a.xy[1] else -a.h / 2))
        pts[-1] = (pts[-1][0], b.xy[1] - (b.h / 2 if pts[0][1] <= b.xy[1] else -b.h / 2))
        d = " ".join(f"{'M' if i == 0 else 'L'} {x:.1f} {y:.1f}" for i, (x, y) in enumerate(pts))
        parts.append(f'<path d="{d}" fill="none" stroke="#555" stroke-width="1.2" marker-end="url(#arrow)"/>')
        label = ge.info.label
        if label:
            mx, my = (
                pts[len(pts) // 2] if len(pts) > 2 else ((pts[0][0] + pts[-1][0]) / 2, (pts[0][1] + pts[-1][1]) / 2)
            )
            parts.append(f'<text x="{mx + 5:.1f}" y="{my:.1f}" fill="#1f5fa8" font-size="10">{escape(label)}</text>')
    for nid, v in verts.items():
        n = by_id[nid]
        x, y, w, h = v.view.xy[0] - v.view.w / 2, v.view.xy[1] - v.view.h / 2, v.view.w, v.view.h
        rx = h / 2 if n.kind in ("input", "output", "op") else 6
        parts.append(
            f'<g><rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="{rx:.1f}" '
            f'fill="{_FILL.get(n.kind, "#eef3fb")}" stroke="#34495e"/>'
        )
        for i, line in enumerate(node_lines(n)):
            weight = ' font-weight="bold"' if i == 0 and n.kind == "module" else ""
            parts.append(
                f'<text x="{v.view.xy[0]:.1f}" y="{y + _PAD + (i + 0.8) * _LINE_H:.1f}" '
                f'text-anchor="middle"{weight}>{escape(line)}</text>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


register_renderers(ModelGraph, mermaid=to_mermaid, dot=to_dot, svg=to_svg, text=to_mermaid)
