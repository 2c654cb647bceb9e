"""The concept graph of a knowledge base in Graphviz DOT (:meth:`KnowledgeBase.to_dot`)."""

from __future__ import annotations

import networkx as nx

from ._printer import expr_to_text, type_to_text


def dot_text(graph: nx.DiGraph) -> str:
    """``graph`` (a :attr:`KnowledgeBase.graph`) in DOT: outputs with a double border, a
    rule's negative head dashed."""
    shapes = {"input": "box", "neural": "box3d", "defined": "ellipse", "decided": "ellipse",
              "rule": "note", "constraint": "octagon"}

    def q(s: str) -> str:  # a DOT string; "\x00" marks a line break
        s = s.replace("\\", "\\\\").replace('"', '\\"')
        return '"' + s.replace("\x00", "\\n") + '"'

    lines = ["digraph greybox {", "  rankdir=LR;"]
    for node, data in graph.nodes(data=True):
        kind = data["kind"]
        if kind == "rule":
            label = f"{node}\x00weight {data['weight']:g}"
        elif kind == "constraint":
            label = node if data["hard"] else f"{node}\x00weight {data['weight']:g}"
        else:
            label = f"{node}: {type_to_text(data['type'])}"
            if data.get("network"):
                label += f"\x00= {data['network']}(...)"
        extra = ", peripheries=2" if data.get("output") else ""
        lines.append(f"  {q(node)} [label={q(label)}, shape={shapes[kind]}{extra}];")
    for a, b, data in graph.edges(data=True):
        value = data.get("value")
        style = ""
        if value is False:
            style = ' [style=dashed, label="not"]'
        elif value is not None and value is not True:
            style = f" [label={q('= ' + expr_to_text(value))}]"
        lines.append(f"  {q(a)} -> {q(b)}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"
