"""The listening socket: TCP named (so answers are not held by Nagle), a busy port explained."""

from __future__ import annotations

import socket

import pytest

from orchestrator.api.server import bind
from orchestrator.errors import ConfigError


def test_the_listener_names_tcp_so_asyncio_turns_nagle_off_on_each_connection() -> None:
    listener = bind("127.0.0.1", 0)
    try:
        assert listener.proto == socket.IPPROTO_TCP
        assert listener.getsockname()[1] > 0
    finally:
        listener.close()


def test_a_port_in_use_is_a_config_error_that_says_what_to_change() -> None:
    taken = bind("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as caught:
            bind("127.0.0.1", port)
    finally:
        taken.close()
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "in use" in message
    assert "ORCHESTRATOR_API_PORT" in message and "api_enabled" in message


def test_an_address_this_machine_does_not_have_is_named() -> None:
    with pytest.raises(ConfigError, match="no such address"):
        bind("192.0.2.1", 0)  # TEST-NET-1: documentation only, never assigned to a host
