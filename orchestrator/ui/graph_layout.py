"""Where each box and arrow of a DAG's picture goes: a layered (Sugiyama-style) layout.

The page draws the result as inline SVG, so everything here is plain geometry in whole pixels:
boxes (top-left corner, width, height) and arrows (polyline points, left to right). Steps:

1. rank each task by the longest path from a root, so every edge points right;
2. an edge spanning several layers gets a virtual point in each layer it passes, a slot of its
   own, so the arrow runs between boxes instead of through them;
3. a few barycenter sweeps (down, then up) reorder each layer to cut crossings, keeping the
   best order seen;
4. layers become columns left to right; in a column, slots stack top to bottom, centred.

Deterministic: the same mapping gives the same picture (the first order is by task id and
every sort is stable). Over `MAX_GRAPH_NODES` tasks there is no picture (None): thousands of
boxes are unreadable and the page lists the tasks instead.
"""

from __future__ import annotations

import graphlib
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from orchestrator.authoring.dag import DAG

MAX_GRAPH_NODES = 500
LABEL_MAX_CHARS = 40
CHAR_WIDTH = 7  # px per label character at the page's font size, rounded up
NODE_PADDING = 12  # px left and right of the label inside its box
NODE_HEIGHT = 32
MIN_NODE_WIDTH = 64
MAX_NODE_WIDTH = LABEL_MAX_CHARS * CHAR_WIDTH + 2 * NODE_PADDING
BEND_HEIGHT = 8  # the slot a long edge takes in a layer it passes through
ROW_GAP = 16
LAYER_GAP = 56
MARGIN = 8
SWEEPS = 8  # each one down and one up; small graphs settle in one, 8 costs 27 ms at 500 tasks

Point = tuple[int, int]


@dataclass(frozen=True)
class NodeBox:
    """One task's box: `x`, `y` its top-left corner in px; `label` the text to show in it."""

    task_id: str
    label: str
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class EdgePath:
    """One arrow, from the upstream box's right edge to the downstream box's left edge."""

    upstream: str
    downstream: str
    points: tuple[Point, ...]


@dataclass(frozen=True)
class GraphLayout:
    """The whole picture: its size in px, the boxes (layer by layer, top to bottom), arrows."""

    width: int
    height: int
    nodes: tuple[NodeBox, ...]
    edges: tuple[EdgePath, ...]


class _Bend(NamedTuple):
    """The slot a long edge takes in a layer between its two ends."""

    upstream: str
    downstream: str
    rank: int


_Slot = str | _Bend
_Edge = tuple[str, str]


def label_of(task_id: str) -> str:
    """The text shown in a task's box: the id, cut with an ellipsis past `LABEL_MAX_CHARS`."""
    if len(task_id) <= LABEL_MAX_CHARS:
        return task_id
    return task_id[: LABEL_MAX_CHARS - 1] + "…"


def box_width(label: str) -> int:
    return max(MIN_NODE_WIDTH, min(MAX_NODE_WIDTH, len(label) * CHAR_WIDTH + 2 * NODE_PADDING))


def layout_dag(dag: DAG) -> GraphLayout | None:
    """The picture of a validated DAG; None over `MAX_GRAPH_NODES` tasks."""
    return layout_graph({task_id: task.upstream_task_ids for task_id, task in dag.tasks.items()})


def layout_graph(upstreams: Mapping[str, Iterable[str]]) -> GraphLayout | None:
    """The picture of `task_id -> upstream task ids`; None over `MAX_GRAPH_NODES` tasks.

    The graph must be acyclic (DAGs are validated when loaded). An upstream id missing from
    the mapping is ignored: the picture shows what it was given rather than failing the page.
    """
    if len(upstreams) > MAX_GRAPH_NODES:
        return None
    edges = _known_edges(upstreams)
    ranks = _ranks(upstreams, edges)
    layers, chains = _layers(ranks, edges)
    layers = _order_by_barycenters(layers, _segments(chains))
    return _place(layers, chains)


def _known_edges(upstreams: Mapping[str, Iterable[str]]) -> list[_Edge]:
    edges = {
        (upstream, task_id)
        for task_id, ids in upstreams.items()
        for upstream in ids
        if upstream in upstreams and upstream != task_id
    }
    return sorted(edges)


def _ranks(upstreams: Mapping[str, Iterable[str]], edges: list[_Edge]) -> dict[str, int]:
    """Each task's layer: 0 for a root, else one more than its highest-ranked upstream."""
    graph: dict[str, set[str]] = {task_id: set() for task_id in upstreams}
    for upstream, downstream in edges:
        graph[downstream].add(upstream)
    ranks: dict[str, int] = {}
    for task_id in graphlib.TopologicalSorter(graph).static_order():
        ranks[task_id] = 1 + max((ranks[up] for up in graph[task_id]), default=-1)
    return ranks


def _layers(
    ranks: dict[str, int], edges: list[_Edge]
) -> tuple[list[list[_Slot]], dict[_Edge, list[_Slot]]]:
    """The slots of each layer (tasks by id, then bends), and each edge's slots end to end."""
    layers: list[list[_Slot]] = [[] for _ in range(1 + max(ranks.values(), default=-1))]
    for task_id in sorted(ranks):
        layers[ranks[task_id]].append(task_id)
    chains: dict[_Edge, list[_Slot]] = {}
    for upstream, downstream in edges:
        bends = [
            _Bend(upstream, downstream, r) for r in range(ranks[upstream] + 1, ranks[downstream])
        ]
        for bend in bends:
            layers[bend.rank].append(bend)
        chains[upstream, downstream] = [upstream, *bends, downstream]
    return layers, chains


def _segments(chains: dict[_Edge, list[_Slot]]) -> list[tuple[_Slot, _Slot]]:
    """Every piece of every edge between two neighbouring layers, left slot first."""
    return [pair for chain in chains.values() for pair in itertools.pairwise(chain)]


def _order_by_barycenters(
    layers: list[list[_Slot]], segments: list[tuple[_Slot, _Slot]]
) -> list[list[_Slot]]:
    """Reorder each layer by the mean position of its neighbours; the fewest crossings win."""
    left: dict[_Slot, list[_Slot]] = {}
    right: dict[_Slot, list[_Slot]] = {}
    for source, target in segments:
        right.setdefault(source, []).append(target)
        left.setdefault(target, []).append(source)
    best, fewest = [list(layer) for layer in layers], _crossings(layers, segments)
    for _ in range(SWEEPS):
        if fewest == 0:
            break
        for index in range(1, len(layers)):
            _sort_layer(layers[index], layers[index - 1], left)
        for index in range(len(layers) - 2, -1, -1):
            _sort_layer(layers[index], layers[index + 1], right)
        if (crossings := _crossings(layers, segments)) < fewest:
            best, fewest = [list(layer) for layer in layers], crossings
    return best


def _sort_layer(
    layer: list[_Slot], fixed: list[_Slot], neighbours: dict[_Slot, list[_Slot]]
) -> None:
    """Sort `layer` in place by its neighbours' mean position in `fixed` (stable, so ties keep
    their order); a slot without neighbours there keeps its own position as its key."""
    position = {slot: index for index, slot in enumerate(fixed)}

    def barycenter(item: tuple[int, _Slot]) -> float:
        own, slot = item
        linked = neighbours.get(slot)
        return sum(position[other] for other in linked) / len(linked) if linked else own

    layer[:] = [slot for _, slot in sorted(enumerate(layer), key=barycenter)]


def _crossings(layers: list[list[_Slot]], segments: list[tuple[_Slot, _Slot]]) -> int:
    """How many pairs of segments cross, counted as inversions between neighbouring layers."""
    position = {slot: index for layer in layers for index, slot in enumerate(layer)}
    rank_of = {slot: rank for rank, layer in enumerate(layers) for slot in layer}
    by_gap: dict[int, list[tuple[int, int]]] = {}
    for source, target in segments:
        by_gap.setdefault(rank_of[source], []).append((position[source], position[target]))
    return sum(_inversions(sorted(pairs), len(layers[gap + 1])) for gap, pairs in by_gap.items())


def _inversions(pairs: list[tuple[int, int]], size: int) -> int:
    """Pairs (in order) whose second values go down: a Fenwick tree over the second values."""
    tree = [0] * (size + 1)
    count = 0
    for seen, (_, target) in enumerate(pairs):
        index, at_most = target + 1, 0
        while index > 0:
            at_most += tree[index]
            index -= index & -index
        count += seen - at_most
        index = target + 1
        while index <= size:
            tree[index] += 1
            index += index & -index
    return count


def _place(layers: list[list[_Slot]], chains: dict[_Edge, list[_Slot]]) -> GraphLayout:
    """Columns left to right, slots stacked and centred in each; then boxes and arrows."""
    columns = _Columns.of(layers)
    nodes = tuple(
        _box(slot, columns.lefts[rank], columns.tops[slot])
        for rank, layer in enumerate(layers)
        for slot in layer
        if isinstance(slot, str)
    )
    boxes = {node.task_id: node for node in nodes}
    edges = tuple(
        EdgePath(up, down, _arrow(boxes[up], chain[1:-1], boxes[down], columns))
        for (up, down), chain in chains.items()
    )
    return GraphLayout(columns.width, columns.height, nodes, edges)


def _box(task_id: str, x: int, y: int) -> NodeBox:
    label = label_of(task_id)
    return NodeBox(task_id, label, x, y, box_width(label), NODE_HEIGHT)


@dataclass(frozen=True)
class _Columns:
    """Each layer's column (left edge, width) and each slot's top, in px."""

    lefts: list[int]
    widths: list[int]
    tops: dict[_Slot, int]
    height: int

    @classmethod
    def of(cls, layers: list[list[_Slot]]) -> _Columns:
        widths = [max(map(_slot_width, layer), default=0) for layer in layers]
        lefts = [MARGIN + sum(widths[:rank]) + LAYER_GAP * rank for rank in range(len(layers))]
        heights = [_column_height(layer) for layer in layers]
        tallest = max(heights, default=0)
        tops: dict[_Slot, int] = {}
        for layer, height in zip(layers, heights, strict=True):
            top = MARGIN + (tallest - height) // 2
            for slot in layer:
                tops[slot] = top
                top += _slot_height(slot) + ROW_GAP
        return cls(lefts, widths, tops, tallest + 2 * MARGIN)

    @property
    def width(self) -> int:
        return self.lefts[-1] + self.widths[-1] + MARGIN if self.lefts else 2 * MARGIN

    def right(self, rank: int) -> int:
        return self.lefts[rank] + self.widths[rank]


def _slot_width(slot: _Slot) -> int:
    return box_width(label_of(slot)) if isinstance(slot, str) else 0


def _slot_height(slot: _Slot) -> int:
    return NODE_HEIGHT if isinstance(slot, str) else BEND_HEIGHT


def _column_height(layer: list[_Slot]) -> int:
    return sum(_slot_height(slot) for slot in layer) + ROW_GAP * max(0, len(layer) - 1)


def _arrow(
    first: NodeBox, bends: list[_Slot], last: NodeBox, columns: _Columns
) -> tuple[Point, ...]:
    """Horizontal inside a column, slanted only in the gaps between columns: no box is crossed.

    A box narrower than its column first runs straight to the column's right edge.
    """
    middle = first.y + NODE_HEIGHT // 2
    points: list[Point] = [(first.x + first.width, middle)]
    column_right = columns.right(columns.lefts.index(first.x))
    if first.x + first.width < column_right:
        points.append((column_right, middle))
    for bend in bends:
        if isinstance(bend, _Bend):
            middle = columns.tops[bend] + BEND_HEIGHT // 2
            points += [(columns.lefts[bend.rank], middle), (columns.right(bend.rank), middle)]
    points.append((last.x, last.y + NODE_HEIGHT // 2))
    return tuple(points)
