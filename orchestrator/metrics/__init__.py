"""Metrics: what the engine did and what it holds now, in Prometheus's text format.

`instruments` keeps the counters and histograms, fed from the engine's change feed (committed
changes only, so a counter never counts a state a crash takes back) and from the API's webhook
receiver; `collector` derives every gauge at scrape time from the engine's own state (runs,
slots, triggers, the loop watchdog, the store's counters), so none is kept by hand. Each engine
has its own `CollectorRegistry`, never the process-wide default one. Labels are bounded: DAG
ids, task ids, states, trigger kinds, pools; never run ids or map indexes.

Imports: the core modules, `store`, `waiting` and `scheduling`; `api` serves `/metrics`.
"""
