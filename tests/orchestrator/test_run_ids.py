"""Run ids: readable and sortable, and unique whatever a task does to `random`."""

from __future__ import annotations

import os
import random
import re
import time
import warnings

from orchestrator.authoring.context import new_run_id

NOW = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC


def test_a_run_id_is_its_queue_time_then_48_random_bits() -> None:
    assert re.fullmatch(r"20260101T000000Z-[0-9a-f]{12}", new_run_id(NOW))


def test_seeding_random_in_the_daemon_does_not_repeat_run_ids() -> None:
    """A task running in the engine's process may call `random.seed(42)` before every run."""
    ids = set()
    for _ in range(3):
        random.seed(42)
        ids.add(new_run_id(NOW))
    assert len(ids) == 3


def test_a_forked_child_draws_other_run_ids_than_its_parent() -> None:
    read, write = os.pipe()
    with warnings.catch_warnings():  # Python 3.12 warns of forking with threads: none run here
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: send its id and leave at once
        os.write(write, new_run_id(NOW).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child != new_run_id(NOW)


def test_a_run_ids_time_is_gmtimes_second_of_it_fractions_and_all() -> None:
    """Each second's text is made once and kept: the same text `gmtime` gives the float."""
    moments = [NOW, NOW + 0.999_999, NOW + 1, NOW - 0.5, 0.0, -0.5, 59.99, 1e9 + 0.5]
    for now in [*moments, *moments]:  # a second's text again, from the cache
        expected = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        assert new_run_id(now).partition("-")[0] == expected
