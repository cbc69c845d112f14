"""What drawing a DAG's picture costs the page: `layout_graph` at 50, 200 and 500 tasks.

    PYTHONPATH=. .venv/bin/python bench/graph_layout.py [--runs N]

Random layered DAGs (fixed seed, so every run times the same graphs): tasks spread over
layers of about 10, each with 1-3 upstreams from the three layers before it, so some edges are
long and get bends. Prints the median wall time of N runs (5) of `layout_graph` per size, with
the bends and crossings left. The page wants under ~0.2 s at `MAX_GRAPH_NODES` (500).
Nothing asserts.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

from machine import machine  # bench/ is on the path when a script runs

from orchestrator.ui import graph_layout
from orchestrator.ui.graph_layout import layout_graph

SIZES = (50, 200, 500)
LAYER_SIZE = 10


def random_dag(size: int, seed: int = 42) -> dict[str, list[str]]:
    chance = random.Random(seed)
    layers: list[list[str]] = []
    upstreams: dict[str, list[str]] = {}
    for index in range(size):
        if index % LAYER_SIZE == 0:
            layers.append([])
        task_id = f"task_{index:04d}"
        reachable = [up for layer in layers[-4:-1] for up in layer]
        upstreams[task_id] = chance.sample(reachable, min(len(reachable), chance.randint(1, 3)))
        layers[-1].append(task_id)
    return upstreams


def time_layout(upstreams: dict[str, list[str]], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        layout_graph(upstreams)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def describe(upstreams: dict[str, list[str]]) -> str:
    edges = sum(len(ids) for ids in upstreams.values())
    ranks = graph_layout._ranks(upstreams, graph_layout._known_edges(upstreams))
    layers, chains = graph_layout._layers(ranks, graph_layout._known_edges(upstreams))
    bends = sum(len(chain) - 2 for chain in chains.values())
    segments = graph_layout._segments(chains)
    before = graph_layout._crossings(layers, segments)
    after = graph_layout._crossings(graph_layout._order_by_barycenters(layers, segments), segments)
    return f"{edges} edges, {len(layers)} layers, {bends} bends, crossings {before} -> {after}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    arguments = parser.parse_args()
    print(machine())
    print("command:", " ".join([sys.executable, *sys.argv]))
    for size in SIZES:
        upstreams = random_dag(size)
        median = time_layout(upstreams, arguments.runs)
        print(f"{size:4d} tasks: median {median * 1000:7.1f} ms  ({describe(upstreams)})")


if __name__ == "__main__":
    main()
