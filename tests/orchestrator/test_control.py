"""The control socket, with a real server and real clients on Unix sockets in tmp_path."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream
from anyio.streams.buffered import BufferedByteReceiveStream

from orchestrator.daemon.control import (
    MAX_REQUEST_BYTES,
    ControlSocketError,
    DaemonError,
    DaemonUnavailableError,
    control_path,
    request,
    request_sync,
    serve_control,
)
from orchestrator.errors import RunError, StateDirError


async def echo(payload: dict[str, Any]) -> dict[str, Any]:
    """A handler that answers with what it was sent."""
    return {"echo": payload}


async def failing(payload: dict[str, Any]) -> dict[str, Any]:
    """A handler that fails as the daemon does on purpose, or by a bug."""
    if payload.get("kind") == "refused":
        raise RunError("no run with id 'r9' in DAG 'train'")
    raise RuntimeError("secret-internal-detail")


def socket_in(tmp_path: Path) -> Path:
    path = control_path(tmp_path)
    assert path == tmp_path.resolve() / "daemon.sock", "tmp_path is too long for this test"
    return path


async def exchange(stream: ByteStream, lines: BufferedByteReceiveStream, raw: bytes) -> Any:
    """Send raw bytes on a connection and read one reply line back."""
    await stream.send(raw)
    with anyio.fail_after(10):
        return json.loads(await lines.receive_until(b"\n", 1 << 20))


async def test_a_request_round_trips(tmp_path: Path) -> None:
    path = socket_in(tmp_path)
    async with serve_control(path, echo):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        result = await request(path, {"command": "trigger", "dag_id": "train", "n": [1, 2]})
    assert result == {"echo": {"command": "trigger", "dag_id": "train", "n": [1, 2]}}
    assert not path.exists(), "the socket file is removed on exit"


async def test_request_sync_works_from_a_thread_without_a_loop(tmp_path: Path) -> None:
    path = socket_in(tmp_path)
    async with serve_control(path, echo):
        with anyio.fail_after(10):
            result = await anyio.to_thread.run_sync(lambda: request_sync(path, {"x": 1}))
    assert result == {"echo": {"x": 1}}


async def test_a_refusal_reaches_the_client_as_its_message(tmp_path: Path) -> None:
    path = socket_in(tmp_path)
    async with serve_control(path, failing):
        with pytest.raises(DaemonError) as caught:
            await request(path, {"kind": "refused"})
    assert str(caught.value) == "no run with id 'r9' in DAG 'train'"
    assert not isinstance(caught.value, DaemonUnavailableError)


async def test_a_handler_bug_is_logged_and_answered_generically(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = socket_in(tmp_path)
    async with serve_control(path, failing):
        with pytest.raises(DaemonError, match="internal error in the daemon") as caught:
            await request(path, {"kind": "bug", "token": "s3cr3t"})
        with pytest.raises(DaemonError, match="no run with id"):  # still serving
            await request(path, {"kind": "refused"})
    assert "secret-internal-detail" not in str(caught.value)
    [record] = [r for r in caplog.records if r.name == "orchestrator.control"]
    assert record.exc_info is not None and "secret-internal-detail" in str(record.exc_info[1])
    assert "'kind', 'token'" in record.getMessage()
    assert "s3cr3t" not in record.getMessage(), "request values may be secrets"


async def test_a_result_that_is_not_json_is_a_handler_bug(tmp_path: Path) -> None:
    async def unserialisable(payload: dict[str, Any]) -> dict[str, Any]:
        return {"when": object()}

    path = socket_in(tmp_path)
    async with serve_control(path, unserialisable):
        with pytest.raises(DaemonError, match="internal error in the daemon"):
            await request(path, {})


async def test_bad_json_and_non_objects_get_an_error_and_the_connection_goes_on(
    tmp_path: Path,
) -> None:
    path = socket_in(tmp_path)
    async with serve_control(path, echo):
        async with await anyio.connect_unix(path) as stream:
            lines = BufferedByteReceiveStream(stream)
            reply = await exchange(stream, lines, b"this is not json\n")
            assert reply["ok"] is False and "one line of JSON" in reply["error"]
            reply = await exchange(stream, lines, b"\xff\xfe\n")
            assert reply["ok"] is False and "one line of JSON" in reply["error"]
            reply = await exchange(stream, lines, b"[1, 2]\n")
            assert reply == {"ok": False, "error": "a request must be a JSON object, got list"}
            reply = await exchange(stream, lines, b'{"after": "errors"}\n')
            assert reply == {"ok": True, "result": {"echo": {"after": "errors"}}}


async def test_an_oversized_request_is_refused_and_closed(tmp_path: Path) -> None:
    path = socket_in(tmp_path)
    async with serve_control(path, echo):
        for oversized in (b"x" * (MAX_REQUEST_BYTES + 10), b"x" * (MAX_REQUEST_BYTES + 1) + b"\n"):
            async with await anyio.connect_unix(path) as stream:
                lines = BufferedByteReceiveStream(stream)
                reply = await exchange(stream, lines, oversized)
                assert reply["ok"] is False
                assert f"at most {MAX_REQUEST_BYTES} bytes" in reply["error"]
                # The server hung up; with our bytes unread, Linux may report a reset.
                hung_up = (anyio.IncompleteRead, anyio.BrokenResourceError)
                with anyio.fail_after(10), pytest.raises(hung_up):
                    await lines.receive_until(b"\n", 100)
        assert await request(path, {"still": "serving"}) == {"echo": {"still": "serving"}}


async def test_the_client_refuses_an_oversized_request_itself(tmp_path: Path) -> None:
    path = socket_in(tmp_path)
    async with serve_control(path, echo):
        with pytest.raises(DaemonError, match=f"takes at most {MAX_REQUEST_BYTES}"):
            await request(path, {"conf": "x" * MAX_REQUEST_BYTES})


async def test_clients_that_hang_up_do_not_hurt_the_server(tmp_path: Path) -> None:
    started, release, finished = anyio.Event(), anyio.Event(), anyio.Event()

    async def slow(payload: dict[str, Any]) -> dict[str, Any]:
        if payload.get("slow"):
            started.set()
            await release.wait()
            finished.set()
        return {"done": True}

    path = socket_in(tmp_path)
    async with serve_control(path, slow):
        async with await anyio.connect_unix(path) as stream:
            await stream.send(b'{"half": ')  # hangs up mid-request
        async with await anyio.connect_unix(path) as stream:
            await stream.send(b'{"slow": true}\n')
            with anyio.fail_after(10):
                await started.wait()
        release.set()  # the reply now goes to a closed connection
        with anyio.fail_after(10):
            await finished.wait()
        assert await request(path, {}) == {"done": True}


async def test_twenty_concurrent_clients_each_get_their_answer(tmp_path: Path) -> None:
    all_arrived = anyio.Event()
    arrived = 0

    async def gathering(payload: dict[str, Any]) -> dict[str, Any]:
        nonlocal arrived
        arrived += 1
        if arrived == 20:
            all_arrived.set()
        await all_arrived.wait()  # every request is in flight at once
        return {"client": payload["client"]}

    results: dict[int, dict[str, Any]] = {}

    async def client(number: int) -> None:
        results[number] = await request(path, {"client": number})

    path = socket_in(tmp_path)
    async with serve_control(path, gathering):
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                for number in range(20):
                    group.start_soon(client, number)
    assert results == {number: {"client": number} for number in range(20)}


async def test_leaving_the_server_cancels_requests_in_flight(tmp_path: Path) -> None:
    started = anyio.Event()
    cancelled = False

    async def forever(payload: dict[str, Any]) -> dict[str, Any]:
        nonlocal cancelled
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled = True
            raise
        raise AssertionError("unreachable")

    path = socket_in(tmp_path)
    async with anyio.create_task_group() as group:
        errors: list[Exception] = []

        async def client() -> None:
            try:
                await request(path, {"wait": True})
            except DaemonError as error:
                errors.append(error)

        async with serve_control(path, forever):
            group.start_soon(client)
            with anyio.fail_after(10):
                await started.wait()
    assert cancelled
    assert not path.exists()
    [error] = errors
    assert "closed the connection without answering" in str(error)
    with pytest.raises(DaemonUnavailableError):
        await request(path, {})


async def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = socket_in(tmp_path)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # bound, never listening, then gone: what a killed daemon leaves
    dead.close()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    with pytest.raises(DaemonUnavailableError, match="no daemon is listening"):
        await request(path, {})
    async with serve_control(path, echo):
        assert await request(path, {"a": 1}) == {"echo": {"a": 1}}


async def test_a_live_server_is_not_taken_over(tmp_path: Path) -> None:
    path = socket_in(tmp_path)
    async with serve_control(path, echo):
        with pytest.raises(ControlSocketError, match="another process already listens"):
            async with serve_control(path, echo):
                pass
        assert await request(path, {"a": 1}) == {"echo": {"a": 1}}
    assert not path.exists()


async def test_a_file_in_the_way_is_not_removed(tmp_path: Path) -> None:
    path = socket_in(tmp_path)
    path.write_text("someone's notes")
    with pytest.raises(ControlSocketError, match="exists and is not a socket") as caught:
        async with serve_control(path, echo):
            pass
    assert isinstance(caught.value, StateDirError)
    assert path.read_text() == "someone's notes"


async def test_a_client_with_no_server_is_told_no_daemon_runs(tmp_path: Path) -> None:
    path = socket_in(tmp_path)
    with pytest.raises(DaemonUnavailableError, match=f"no daemon is listening on {path}"):
        await request(path, {})
    with pytest.raises(DaemonUnavailableError):
        await request(tmp_path / "missing-dir" / "daemon.sock", {})
    with pytest.raises(DaemonUnavailableError):
        await anyio.to_thread.run_sync(lambda: request_sync(path, {}))


async def test_a_daemon_that_does_not_answer_in_time(tmp_path: Path) -> None:
    async def forever(payload: dict[str, Any]) -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    path = socket_in(tmp_path)
    async with serve_control(path, forever):
        with pytest.raises(DaemonError, match=r"did not answer within 0\.05 s"):
            await request(path, {}, timeout=0.05)


async def test_an_idle_connection_is_closed(tmp_path: Path) -> None:
    path = socket_in(tmp_path)
    async with serve_control(path, echo, idle_timeout=0.05):
        async with await anyio.connect_unix(path) as stream:
            with anyio.fail_after(10), pytest.raises(anyio.EndOfStream):
                await stream.receive()


async def test_a_long_state_dir_falls_back_to_a_short_private_path(tmp_path: Path) -> None:
    state_dir = tmp_path / ("a-rather-long-folder-name-" * 5) / "state"
    state_dir.mkdir(parents=True)
    path = control_path(state_dir)
    assert path.parent == Path(f"/tmp/orchestrator-{os.getuid()}")
    assert len(os.fsencode(path)) < 108
    assert control_path(state_dir / "." / ".." / "state") == path, "one dir, one path"
    assert control_path(tmp_path) != path
    async with serve_control(path, echo):
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
        assert await request(control_path(state_dir), {"b": 2}) == {"echo": {"b": 2}}
    assert not path.exists()


async def test_a_symlinked_state_dir_gives_the_same_path(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert control_path(tmp_path / "link") == control_path(tmp_path / "real")


async def test_a_fallback_folder_others_can_use_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stands in for /tmp, where anyone may have made the folder before us.
    monkeypatch.setattr("orchestrator.daemon.control._FALLBACK_ROOT", tmp_path)
    shared = tmp_path / f"orchestrator-{os.getuid()}"
    shared.mkdir()
    shared.chmod(0o777)
    path = shared / "0123.sock"
    with pytest.raises(ControlSocketError, match="not a folder only you can use"):
        async with serve_control(path, echo):
            pass
    with pytest.raises(ControlSocketError, match="not a folder only you can use"):
        await request(path, {})
    assert not path.exists()
