"""Open files: the limit raised to the hard one, running out recognised, its log throttled."""

from __future__ import annotations

import errno
import logging
import resource
from collections.abc import Iterator

import anyio
import pytest

from orchestrator.descriptors import ThrottledLog, out_of_descriptors, raise_open_file_limit


@pytest.fixture
def lowered_soft_limit() -> Iterator[tuple[int, int]]:
    """This process's soft open-file limit lowered below its hard one, and restored after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 64:
        pytest.skip("needs a finite hard open-file limit above 64")
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    yield 64, hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_soft_open_file_limit_is_raised_to_the_hard_one(
    lowered_soft_limit: tuple[int, int],
) -> None:
    soft, hard = lowered_soft_limit
    assert raise_open_file_limit() == (soft, hard)
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    assert raise_open_file_limit() == (hard, hard)  # nothing left to raise


def test_running_out_of_files_is_recognised_through_the_error_it_caused() -> None:
    emfile = OSError(errno.EMFILE, "Too many open files")
    broken = anyio.BrokenResourceError()
    broken.__cause__ = emfile
    assert out_of_descriptors(emfile) and out_of_descriptors(broken)
    assert not out_of_descriptors(OSError(errno.ECONNRESET, "reset"))
    assert not out_of_descriptors(anyio.BrokenResourceError())


def test_a_throttled_warning_is_logged_once_per_interval_with_what_was_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    log = ThrottledLog(logging.getLogger("test.throttled"), interval=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.throttled"):
        for _ in range(1000):
            log.warning("out of %s", "files")
        now[0] = 60.0
        log.warning("out of %s", "files")
    assert [record.getMessage() for record in caplog.records] == [
        "out of files",
        "out of files (999 more times since the last report)",
    ]
