"""Request limits: body size, JSON shape and depth, and per-key rate limiting."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator

import pytest

from orchestrator.api.limits import RateLimiter, parse_json, read_body
from orchestrator.clock import FakeClock
from orchestrator.errors import PayloadError

# -- read_body ------------------------------------------------------------------------------------


class Chunks:
    """An async stream of chunks, like `request.stream()`, that counts what was read from it."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.read += 1
            yield chunk
        yield b""  # Starlette ends a stream with an empty chunk


async def test_a_body_within_the_limit_is_returned_whole() -> None:
    body = await read_body(Chunks(b"ab", b"", b"cd"), limit=4, content_length="4")
    assert body == b"abcd"


async def test_a_chunked_body_exactly_at_the_limit_is_accepted() -> None:
    assert await read_body(Chunks(b"abc", b"d"), limit=4, content_length=None) == b"abcd"


async def test_an_empty_body_is_accepted() -> None:
    assert await read_body(Chunks(), limit=0, content_length="0") == b""


async def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    chunks = Chunks(b"abcde")
    with pytest.raises(PayloadError) as caught:
        await read_body(chunks, limit=4, content_length="5")
    assert (caught.value.status, caught.value.code) == (413, "body_too_large")
    assert "larger than 4 bytes" in str(caught.value)
    assert chunks.read == 0


async def test_a_chunked_body_one_byte_over_is_refused_as_it_arrives() -> None:
    chunks = Chunks(b"ab", b"cde", b"never read")
    with pytest.raises(PayloadError, match="larger than 4 bytes") as caught:
        await read_body(chunks, limit=4, content_length=None)
    assert caught.value.status == 413
    assert chunks.read == 2


async def test_a_content_length_smaller_than_the_body_does_not_lift_the_limit() -> None:
    # A lying Content-Length is the HTTP server's to reject; here only the limit must hold.
    with pytest.raises(PayloadError, match="larger than 4 bytes"):
        await read_body(Chunks(b"abc", b"de"), limit=4, content_length="1")


@pytest.mark.parametrize("header", ["", "abc", "-1", "4.0", "0x10", "1e3", "1" * 21])
async def test_a_content_length_that_is_not_a_byte_count_is_refused(header: str) -> None:
    chunks = Chunks(b"abcd")
    with pytest.raises(PayloadError) as caught:
        await read_body(chunks, limit=100, content_length=header)
    assert (caught.value.status, caught.value.code) == (400, "bad_content_length")
    assert str(caught.value) == "the Content-Length header must be a whole number of bytes"
    assert chunks.read == 0


# -- parse_json -----------------------------------------------------------------------------------


def refused_json(body: bytes, max_depth: int = 32) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        parse_json(body, max_depth=max_depth)
    assert caught.value.status == 400
    return caught.value


def test_json_documents_are_parsed() -> None:
    document = {"dag": "retrain", "conf": {"path": "a[b]{c}.csv", "n": [1, 2.5, None, True]}}
    assert parse_json(json.dumps(document).encode(), max_depth=32) == document
    assert parse_json(b'"just a string"', max_depth=0) == "just a string"


def test_nesting_exactly_at_the_limit_is_accepted_and_one_deeper_is_refused() -> None:
    assert parse_json(b"[" * 5 + b"]" * 5, max_depth=5) == [[[[[]]]]]
    assert parse_json(b'{"a":{"b":{"c":[1]}}}', max_depth=4) == {"a": {"b": {"c": [1]}}}
    error = refused_json(b'{"a":{"b":{"c":[1]}}}', max_depth=3)
    assert error.code == "json_too_deep"
    assert "more than 3 levels deep" in str(error)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    body = json.dumps({"a": "[[[[{{{{" * 20, "b": ['\\"[[[[', "]]}}"]}).encode()
    assert parse_json(body, max_depth=2)["b"] == ['\\"[[[[', "]]}}"]


def test_many_shallow_containers_are_not_deep() -> None:
    body = json.dumps([{"x": [i]} for i in range(10_000)]).encode()
    assert len(parse_json(body, max_depth=3)) == 10_000


@pytest.mark.parametrize("max_depth", [32, 1_000_000])
def test_pathological_nesting_is_refused_without_recursion_error(max_depth: int) -> None:
    for body in (b"[" * 100_000, b'{"a":' * 100_000, b"[" * 100_000 + b"]" * 100_000):
        assert refused_json(body, max_depth).code in ("json_too_deep", "invalid_json")


def test_an_unterminated_string_of_escaped_quotes_is_refused() -> None:
    # Enough brackets to need the depth scan, then a string that never ends.
    error = refused_json(b"[" * 40 + b'"' + b'\\"' * 200_000)
    assert error.code == "json_too_deep"
    # Shallow, but with more brackets than the limit, so the depth scan reads the string too.
    error = refused_json(b"[]" * 40 + b'"' + b'\\"' * 200_000)
    assert error.code == "invalid_json"


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"a": 1,}', "line 1, column 9"),
        (b'{\n  "a": 1\n  "b": 2\n}', "line 3, column 3"),
        (b"[1, 2", "line 1, column 6"),
        (b"{} {}", "line 1, column 4"),
        (b"'single'", "line 1, column 1"),
    ],
)
def test_invalid_json_names_its_position(body: bytes, where: str) -> None:
    error = refused_json(body)
    assert error.code == "invalid_json"
    assert str(error).startswith("the body is not valid JSON: ")
    assert str(error).endswith(where)


def test_invalid_utf8_names_its_position() -> None:
    error = refused_json(b'{"a":\n  "caf\xe9"}')
    assert error.code == "invalid_json"
    assert str(error) == "the body is not valid UTF-8 (line 2, column 7); send JSON as UTF-8"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused(literal: str) -> None:
    error = refused_json(f'{{"loss": {literal}}}'.encode())
    assert error.code == "invalid_json"
    assert str(error) == f"the body holds {literal}, which is not JSON; send a number or null"


@pytest.mark.parametrize("body", [b"", b" \n\t"])
def test_an_empty_body_is_refused(body: bytes) -> None:
    assert str(refused_json(body)) == "the body is empty; send a JSON document"


def test_an_integer_beyond_the_digit_limit_is_refused() -> None:
    error = refused_json(b'{"n": ' + b"7" * 5_000 + b"}")
    assert error.code == "invalid_json"
    assert "too many digits" in str(error)


# -- RateLimiter ----------------------------------------------------------------------------------


def test_a_bucket_starts_full_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock)
    assert [limiter.acquire("hook", 5.0) for _ in range(5)] == [None] * 5
    assert limiter.acquire("hook", 5.0) == pytest.approx(0.2)
    clock.advance(0.1)
    assert limiter.acquire("hook", 5.0) == pytest.approx(0.1)
    clock.advance(0.1)
    assert limiter.acquire("hook", 5.0) is None
    assert limiter.acquire("hook", 5.0) == pytest.approx(0.2)


def test_waiting_exactly_the_returned_time_is_enough() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock)
    for rate in (3.0, 7.0, 100.0, 0.3):
        key = f"dag-{rate}"
        while (wait := limiter.acquire(key, rate)) is None:
            pass
        for _ in range(5):
            clock.advance(wait)
            assert limiter.acquire(key, rate) is None
            wait = limiter.acquire(key, rate)
            assert wait is not None


def test_slow_rates_have_a_burst_of_one() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock)
    assert limiter.acquire("hook", 0.1) is None
    assert limiter.acquire("hook", 0.1) == pytest.approx(10.0)
    clock.advance(3600)  # a long idle spell still allows only one at once
    assert limiter.acquire("hook", 0.1) is None
    assert limiter.acquire("hook", 0.1) == pytest.approx(10.0)


def test_keys_have_separate_buckets() -> None:
    limiter = RateLimiter(FakeClock())
    assert limiter.acquire("a", 1.0) is None
    assert limiter.acquire("a", 1.0) is not None
    assert limiter.acquire("b", 1.0) is None


class SteppingClock:
    """A wall clock an administrator (or NTP) can step backwards, unlike FakeClock."""

    def __init__(self) -> None:
        self.time = 1_800_000_000.0

    def now(self) -> float:
        return self.time

    async def sleep_until(self, deadline: float) -> None:
        raise NotImplementedError("the rate limiter never sleeps")


def test_a_clock_stepping_back_takes_no_tokens_away() -> None:
    clock = SteppingClock()
    limiter = RateLimiter(clock)
    assert limiter.acquire("hook", 2.0) is None
    clock.time -= 50  # refilling by -50 s would leave -99 tokens: a 50 s wait
    assert limiter.acquire("hook", 2.0) is None
    assert limiter.acquire("hook", 2.0) == pytest.approx(0.5)


@pytest.mark.parametrize("rate", [0.0, -1.0, math.inf, math.nan])
def test_a_rate_that_is_not_positive_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="requests per second above 0"):
        RateLimiter(FakeClock()).acquire("hook", rate)


def test_idle_keys_do_not_grow_memory_without_bound() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock, max_keys=100)
    for n in range(10_000):
        assert limiter.acquire(f"delivery-{n}", 10.0) is None
        clock.advance(0.05)  # each bucket is full again 0.1 s after its one request
    assert len(limiter) <= 101


def test_busy_keys_are_kept_so_their_limits_still_hold() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock, max_keys=100)
    for n in range(300):
        assert limiter.acquire(f"dag-{n}", 1.0) is None
    assert len(limiter) == 300
    assert all(limiter.acquire(f"dag-{n}", 1.0) is not None for n in range(300))
    clock.advance(1.0)
    # The table is scanned again once it has doubled: then the 300 refilled buckets go.
    for n in range(101):
        assert limiter.acquire(f"new-{n}", 1.0) is None
    assert len(limiter) == 101
    assert limiter.acquire("dag-0", 1.0) is None
