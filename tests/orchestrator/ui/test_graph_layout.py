"""The DAG picture's geometry: layers left to right, long edges around boxes, few crossings."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

import pytest

from orchestrator.authoring.dag import DAG
from orchestrator.authoring.operators import Shell
from orchestrator.ui import graph_layout
from orchestrator.ui.graph_layout import (
    LABEL_MAX_CHARS,
    MAX_GRAPH_NODES,
    MAX_NODE_WIDTH,
    MIN_NODE_WIDTH,
    NODE_HEIGHT,
    EdgePath,
    GraphLayout,
    NodeBox,
    label_of,
    layout_dag,
    layout_graph,
)

Point = tuple[float, float]


def _layout(upstreams: Mapping[str, Iterable[str]]) -> GraphLayout:
    layout = layout_graph(upstreams)
    assert layout is not None
    return layout


def _boxes(layout: GraphLayout) -> dict[str, NodeBox]:
    return {node.task_id: node for node in layout.nodes}


def _segments(edge: EdgePath) -> list[tuple[Point, Point]]:
    return list(zip(edge.points, edge.points[1:], strict=False))


def _enters(start: Point, end: Point, box: NodeBox) -> bool:
    """Whether the segment passes through the box's inside (touching its border is fine)."""
    left, top = box.x + 0.5, box.y + 0.5
    right, bottom = box.x + box.width - 0.5, box.y + box.height - 0.5
    low, high = 0.0, 1.0
    dx, dy = end[0] - start[0], end[1] - start[1]
    for delta, distance in (
        (-dx, start[0] - left),
        (dx, right - start[0]),
        (-dy, start[1] - top),
        (dy, bottom - start[1]),
    ):
        if delta == 0:
            if distance < 0:
                return False
        elif delta < 0:
            low = max(low, distance / delta)
        else:
            high = min(high, distance / delta)
    return low <= high


def _cross(first: tuple[Point, Point], second: tuple[Point, Point]) -> bool:
    """Whether two segments cross at a point inside both (sharing an end is not a crossing)."""

    def turn(a: Point, b: Point, c: Point) -> float:
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    (a, b), (c, d) = first, second
    return turn(a, b, c) * turn(a, b, d) < 0 and turn(c, d, a) * turn(c, d, b) < 0


def _crossings(layout: GraphLayout) -> int:
    segments = [segment for edge in layout.edges for segment in _segments(edge)]
    return sum(
        _cross(first, second)
        for index, first in enumerate(segments)
        for second in segments[index + 1 :]
    )


def _assert_well_drawn(layout: GraphLayout) -> None:
    """Arrows go from right edge to left edge, left to right, through no box; all inside."""
    boxes = _boxes(layout)
    for edge in layout.edges:
        up, down = boxes[edge.upstream], boxes[edge.downstream]
        assert edge.points[0] == (up.x + up.width, up.y + NODE_HEIGHT // 2)
        assert edge.points[-1] == (down.x, down.y + NODE_HEIGHT // 2)
        xs = [x for x, _ in edge.points]
        assert xs == sorted(xs)
        for start, end in _segments(edge):
            entered = [box.task_id for box in layout.nodes if _enters(start, end, box)]
            assert not entered, f"{edge.upstream}->{edge.downstream} goes through {entered}"
    for node in layout.nodes:
        assert 0 < node.x and node.x + node.width < layout.width
        assert 0 < node.y and node.y + node.height < layout.height


def _random_dag(size: int, seed: int) -> dict[str, list[str]]:
    chance = random.Random(seed)
    upstreams: dict[str, list[str]] = {}
    for index in range(size):
        earlier = list(upstreams)
        count = min(len(earlier), chance.choice([0, 1, 1, 2, 3]))
        upstreams[f"task_{index:04d}"] = chance.sample(earlier, count)
    return upstreams


def test_a_chain_is_one_row_left_to_right() -> None:
    layout = _layout({"extract": [], "transform": ["extract"], "load": ["transform"]})
    boxes = _boxes(layout)
    assert [node.task_id for node in layout.nodes] == ["extract", "transform", "load"]
    assert {node.y for node in layout.nodes} == {8}
    assert boxes["extract"].x < boxes["transform"].x < boxes["load"].x
    assert [edge.points for edge in layout.edges] == [
        ((boxes["extract"].x + boxes["extract"].width, 24), (boxes["transform"].x, 24)),
        ((boxes["transform"].x + boxes["transform"].width, 24), (boxes["load"].x, 24)),
    ]
    assert (layout.width, layout.height) == (boxes["load"].x + boxes["load"].width + 8, 48)


def test_a_diamond_puts_its_two_middle_tasks_in_one_layer() -> None:
    layout = _layout({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]})
    boxes = _boxes(layout)
    assert boxes["b"].x == boxes["c"].x
    assert boxes["a"].x < boxes["b"].x < boxes["d"].x
    assert (boxes["b"].y, boxes["c"].y) == (8, 56)
    # The ends sit centred against the middle layer.
    assert boxes["a"].y == boxes["d"].y == 32
    assert [(edge.upstream, edge.downstream) for edge in layout.edges] == [
        ("a", "b"),
        ("a", "c"),
        ("b", "d"),
        ("c", "d"),
    ]
    _assert_well_drawn(layout)


def test_a_long_edge_bends_through_its_own_slot_in_each_layer_it_passes() -> None:
    layout = _layout({"a": [], "b": ["a"], "c": ["b"], "d": ["c", "a"]})
    boxes = _boxes(layout)
    (long_edge,) = [edge for edge in layout.edges if (edge.upstream, edge.downstream) == ("a", "d")]
    # Two points in each of the layers of b and c, beside (not through) their boxes.
    assert len(long_edge.points) == 6
    bends = long_edge.points[1:-1]
    assert [x for x, _ in bends] == [
        boxes["b"].x,
        boxes["b"].x + boxes["b"].width,
        boxes["c"].x,
        boxes["c"].x + boxes["c"].width,
    ]
    assert all(y >= boxes["b"].y + NODE_HEIGHT for _, y in bends)
    _assert_well_drawn(layout)


def test_a_narrow_box_runs_to_its_columns_edge_before_the_arrow_slants() -> None:
    wide = "w" * 30
    layout = _layout({"a": [], wide: [], "x": ["a"], "y": [wide]})
    boxes = _boxes(layout)
    (edge,) = [edge for edge in layout.edges if edge.upstream == "a"]
    assert edge.points[1] == (boxes[wide].x + boxes[wide].width, edge.points[0][1])
    _assert_well_drawn(layout)


def test_barycenter_sweeps_undo_the_crossings_of_the_alphabetical_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # By id alone, every edge crosses every other: a-z, b-y, c-x, then z-p, y-q, x-r.
    upstreams = {
        "a": [],
        "b": [],
        "c": [],
        "x": ["c"],
        "y": ["b"],
        "z": ["a"],
        "p": ["z"],
        "q": ["y"],
        "r": ["x"],
    }
    monkeypatch.setattr(graph_layout, "SWEEPS", 0)
    assert _crossings(_layout(upstreams)) == 6
    monkeypatch.undo()
    layout = _layout(upstreams)
    assert _crossings(layout) == 0
    boxes = _boxes(layout)
    assert boxes["z"].y < boxes["y"].y < boxes["x"].y
    _assert_well_drawn(layout)


def test_a_task_with_two_upstreams_moves_between_their_other_children() -> None:
    # By id: a, b over m, n, o, with m under b and n under a: two crossings.
    layout = _layout({"a": [], "b": [], "m": ["b"], "n": ["a"], "o": ["a", "b"]})
    assert _crossings(layout) == 0
    _assert_well_drawn(layout)


def test_the_same_graph_gives_the_same_picture_whatever_the_order_it_comes_in() -> None:
    upstreams = _random_dag(80, seed=7)
    shuffled = list(upstreams.items())
    random.Random(1).shuffle(shuffled)
    again = {task_id: tuple(reversed(ids)) for task_id, ids in shuffled}
    assert _layout(upstreams) == _layout(again) == _layout(upstreams)


def test_a_random_dag_is_well_drawn() -> None:
    layout = _layout(_random_dag(60, seed=3))
    assert len(layout.nodes) == 60
    _assert_well_drawn(layout)


def test_an_upstream_missing_from_the_mapping_is_left_out() -> None:
    layout = _layout({"a": ["gone"], "b": ["a", "also_gone"], "c": ["c"]})
    assert [(edge.upstream, edge.downstream) for edge in layout.edges] == [("a", "b")]
    assert {node.task_id for node in layout.nodes} == {"a", "b", "c"}


def test_over_the_limit_there_is_no_picture() -> None:
    assert layout_graph(_random_dag(2_000, seed=1)) is None
    assert layout_graph({f"t{n}": [] for n in range(MAX_GRAPH_NODES + 1)}) is None
    assert layout_graph({f"t{n}": [] for n in range(MAX_GRAPH_NODES)}) is not None


def test_an_empty_graph_is_an_empty_picture() -> None:
    assert layout_graph({}) == GraphLayout(width=16, height=16, nodes=(), edges=())


def test_a_box_grows_with_its_label_which_a_long_id_shortens() -> None:
    long_id = "x" * 60
    assert label_of(long_id) == "x" * (LABEL_MAX_CHARS - 1) + "…"
    assert label_of("x" * LABEL_MAX_CHARS) == "x" * LABEL_MAX_CHARS
    boxes = _boxes(_layout({"a": [], "medium_task_id": [], long_id: []}))
    assert boxes["a"].width == MIN_NODE_WIDTH
    assert MIN_NODE_WIDTH < boxes["medium_task_id"].width < MAX_NODE_WIDTH
    assert (boxes[long_id].label, boxes[long_id].width) == (label_of(long_id), MAX_NODE_WIDTH)


def test_a_dag_is_drawn_from_its_tasks_upstream_ids() -> None:
    with DAG("picture") as pipeline:
        extract = Shell("true", task_id="extract")
        clean = Shell("true", task_id="clean")
        load = Shell("true", task_id="load")
        extract >> clean >> load
        extract >> load
    layout = layout_dag(pipeline)
    assert layout is not None
    assert [(edge.upstream, edge.downstream) for edge in layout.edges] == [
        ("clean", "load"),
        ("extract", "clean"),
        ("extract", "load"),
    ]
    _assert_well_drawn(layout)
