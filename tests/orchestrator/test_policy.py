"""The input policy: untrusted URLs and paths, in every spelling an attacker would try."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from httpserver import Reply, serve

from orchestrator.config import Settings
from orchestrator.errors import ConfigError, PolicyError
from orchestrator.policy import (
    InputPolicy,
    ip_literal,
    policy_checked_client,
    refusal_reason,
)


def resolving(*addresses: str) -> Callable[[str, int], Any]:
    """A resolver that answers `addresses` for every name, and records what it was asked."""

    async def resolve(host: str, port: int) -> Sequence[str]:
        resolve.asked.append((host, port))  # type: ignore[attr-defined]
        return addresses

    resolve.asked = []  # type: ignore[attr-defined]
    return resolve


async def unresolvable(host: str, port: int) -> Sequence[str]:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


# -- URLs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://0xA9FEA9FE/", "metadata"),  # hex integer
        ("http://2852039166/", "metadata"),  # decimal integer
        ("http://0xa9.0xfe.0xa9.0xfe/", "metadata"),  # hex parts
        ("http://0251.0376.0124776/", "metadata"),  # octal parts, short form
        ("http://169.254.43518/", "metadata"),  # short form, last part fills two bytes
        ("http://[::ffff:169.254.169.254]/", "metadata"),  # IPv4-mapped IPv6
        ("http://[64:ff9b::a9fe:a9fe]/", "metadata"),  # NAT64
        ("http://[fd00:ec2::254]/", "metadata"),  # AWS over IPv6
        ("http://100.100.100.200/", "metadata"),  # Alibaba
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
        ("http://METADATA./", "metadata"),
        ("http://127.0.0.1:8080/admin", "loopback"),
        ("http://127.1/", "loopback"),
        ("http://0x7f000001/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://10.1.2.3/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://[fd12:3456::1]/", "private"),
        ("http://169.254.1.1/", "link-local"),
        ("http://[fe80::1%25eth0]/", "link-local"),
        ("http://224.0.0.1/", "multicast"),
        ("http://[ff02::1]/", "multicast"),
        ("http://100.64.0.1/", "shared"),
        ("http://240.0.0.1/", "reserved"),
        ("http://[2002:0a00:0001::1]/", "private"),  # 6to4 wrapping 10.0.0.1
    ],
)
async def test_refuses_non_public_addresses_in_every_spelling(url: str, reason: str) -> None:
    policy = InputPolicy(resolver=resolving("93.184.216.34"))

    with pytest.raises(PolicyError, match=reason) as refused:
        await policy.check_url(url)

    assert repr(url) in str(refused.value)
    assert policy.resolver.asked == []  # type: ignore[union-attr]  # literals never reach DNS


async def test_an_octal_dotted_quad_is_refused_as_well() -> None:
    # httpx refuses to parse this spelling, so the URL is refused before any address is read;
    # the policy would read it as 169.254.169.254 all the same.
    with pytest.raises(PolicyError, match="not a valid URL"):
        await InputPolicy().check_url("http://0251.0376.0251.0376/")
    assert ip_literal("0251.0376.0251.0376") == IPv4Address("169.254.169.254")


@pytest.mark.parametrize(
    "host", ["08", "1.2.3.4.5", "256.1.1.1.1", "0x", "example.com", "1.2.3.4x", "", "12.0x1g"]
)
def test_what_is_not_an_ip_literal_is_left_to_the_resolver(host: str) -> None:
    assert ip_literal(host) is None


async def test_localhost_is_resolved_for_real_and_refused() -> None:
    with pytest.raises(PolicyError, match=r"localhost \(.*\) is a loopback address"):
        await InputPolicy().check_url("http://localhost:8080/")


async def test_an_unresolvable_host_is_refused() -> None:
    with pytest.raises(PolicyError, match=r"no-such-host\.invalid cannot be resolved"):
        await InputPolicy().check_url("http://no-such-host.invalid/")
    with pytest.raises(PolicyError, match="cannot be resolved"):
        await InputPolicy(resolver=unresolvable).check_url("https://example.com/")
    with pytest.raises(PolicyError, match="resolves to no address"):
        await InputPolicy(resolver=resolving()).check_url("https://example.com/")


async def test_every_resolved_address_must_be_public() -> None:
    resolver = resolving("93.184.216.34", "10.0.0.7")

    with pytest.raises(PolicyError, match=r"example\.com \(10\.0\.0\.7\) is a private address"):
        await InputPolicy(resolver=resolver).check_url("https://example.com/x")

    assert resolver.asked == [("example.com", 443)]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.216.34/",
        "https://93.184.216.34:8443/path?q=1",
        "http://[2606:4700:4700::1111]/",
        "http://[::ffff:93.184.216.34]/",
        "https://example.com/",  # resolved by the fake resolver to a public address
    ],
)
async def test_admits_public_addresses(url: str) -> None:
    await InputPolicy(resolver=resolving("93.184.216.34", "2606:4700:4700::1111")).check_url(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "scheme 'file' is not allowed"),
        ("gopher://127.0.0.1:6379/_INFO", "scheme 'gopher' is not allowed"),
        ("ftp://example.com/file", "scheme 'ftp' is not allowed"),
        ("javascript:alert(1)", "scheme 'javascript' is not allowed"),
        ("example.com/path", "scheme '' is not allowed"),
        ("http:///path", "names no host"),
        ("http://", "names no host"),
    ],
)
async def test_refuses_other_schemes_and_missing_hosts(url: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        await InputPolicy(allow_private_urls=True).check_url(url)


async def test_refuses_a_url_that_is_not_a_string() -> None:
    with pytest.raises(PolicyError, match="must be a string"):
        await InputPolicy().check_url(["http://example.com/"])  # type: ignore[arg-type]


async def test_allow_private_urls_admits_private_networks_but_not_metadata() -> None:
    policy = InputPolicy(allow_private_urls=True)
    for url in ("http://10.0.0.1/", "http://127.0.0.1:9000/", "http://localhost/"):
        await policy.check_url(url)

    for url in (
        "http://169.254.169.254/",
        "http://[::ffff:169.254.169.254]/",
        "http://100.100.100.200/",
        "http://metadata.google.internal/",
    ):
        with pytest.raises(PolicyError, match="metadata endpoint; only an allowed_hosts entry"):
            await policy.check_url(url)


async def test_allowed_hosts_admit_exactly_the_hosts_and_ports_named() -> None:
    policy = InputPolicy(allowed_hosts=("127.0.0.1:8080", "LocalHost", "[::1]:9000"))

    await policy.check_url("http://127.0.0.1:8080/")
    await policy.check_url("http://127.1:8080/")  # another spelling of the same address
    await policy.check_url("http://localhost:1234/")  # no port given: every port
    await policy.check_url("http://localhost./")
    await policy.check_url("http://[::1]:9000/")
    for url in ("http://127.0.0.1:8081/", "http://127.0.0.1/", "http://[::1]:9001/"):
        with pytest.raises(PolicyError, match="loopback"):
            await policy.check_url(url)


async def test_allowed_hosts_is_the_only_way_to_a_metadata_endpoint() -> None:
    await InputPolicy(allowed_hosts=("169.254.169.254",)).check_url("http://169.254.169.254/")
    await InputPolicy(allowed_hosts=("metadata",)).check_url("http://metadata/")


@pytest.mark.parametrize("entry", ["", "host:port", "127.0.0.1:0", "[::1]:99999", "[::1]:x"])
def test_bad_allowed_hosts_entries_are_reported_at_once(entry: str) -> None:
    with pytest.raises(ConfigError, match="allowed_hosts"):
        InputPolicy(allowed_hosts=(entry,))


def test_from_settings(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = make_settings(allowed_roots=(tmp_path,), allow_private_urls=True)

    policy = InputPolicy.from_settings(settings)

    assert policy == InputPolicy(allowed_roots=(tmp_path,), allow_private_urls=True)
    later = SimpleNamespace(allowed_roots=(), allow_private_urls=False, allowed_hosts=["a:1"])
    assert InputPolicy.from_settings(later).allowed_hosts == ("a:1",)  # type: ignore[arg-type]


def test_the_resolver_is_not_part_of_the_policy_value() -> None:
    assert InputPolicy(resolver=unresolvable) == InputPolicy()
    assert "resolver" not in repr(InputPolicy(resolver=unresolvable))


def test_refusal_reason_names_the_category() -> None:
    assert refusal_reason(IPv4Address("8.8.8.8")) is None
    assert refusal_reason(IPv4Address("192.0.2.1")) == "a private address"  # documentation net


# -- the checked httpx client ---------------------------------------------------------------------


async def test_the_checked_client_refuses_a_redirect_hop_before_sending_it() -> None:
    with serve() as public, serve() as internal:
        public.script("/go", Reply.redirect(f"{internal.url}/secret"))
        seen: list[str] = []

        async def record(request: httpx.Request) -> None:
            seen.append(str(request.url))

        policy = InputPolicy(allowed_hosts=(f"127.0.0.1:{public.port}",))
        async with policy_checked_client(policy, event_hooks={"request": [record]}) as client:
            with pytest.raises(PolicyError, match=rf"127\.0\.0\.1:{internal.port}/secret"):
                await client.get(f"{public.url}/go", follow_redirects=True)

        assert public.hits("/go") == 1
        assert internal.hits() == 0
        assert seen == [f"{public.url}/go"]  # the caller's hook ran after the check, once


async def test_the_checked_client_sends_what_the_policy_admits() -> None:
    with serve() as server:
        server.script("/a", Reply.redirect("/b"))
        server.script("/b", Reply.text("fine"))
        policy = InputPolicy(allowed_hosts=(f"127.0.0.1:{server.port}",))

        async with policy_checked_client(policy, follow_redirects=True) as client:
            response = await client.get(f"{server.url}/a")

        assert response.text == "fine"
        assert [seen.path for seen in server.requests] == ["/a", "/b"]


# -- paths ----------------------------------------------------------------------------------------


def test_a_path_inside_an_allowed_root_resolves(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "in").mkdir(parents=True)
    (root / "in" / "a.csv").write_text("x")
    policy = InputPolicy(allowed_roots=(root,))

    assert policy.check_path(str(root / "in" / "a.csv")) == (root / "in" / "a.csv").resolve()
    assert policy.check_path(str(root / "in" / ".." / "new.csv")) == (root / "new.csv").resolve()
    assert policy.check_path(str(root / "not" / "yet" / "there")) == (
        root.resolve() / "not" / "yet" / "there"
    )


@pytest.mark.parametrize(
    "relative", ["../secret.txt", "in/../../secret.txt", "../data-evil/x", "/etc/passwd"]
)
def test_a_path_outside_the_roots_is_refused(tmp_path: Path, relative: str) -> None:
    root = tmp_path / "data"
    (root / "in").mkdir(parents=True)
    path = str(root / relative) if not relative.startswith("/") else relative

    with pytest.raises(PolicyError, match="outside the allowed roots") as refused:
        InputPolicy(allowed_roots=(root,)).check_path(path)

    message = str(refused.value)
    assert repr(path) in message
    assert str(root.resolve()) in message
    assert f"resolves to {os.path.realpath(path)}" in message


def test_a_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "data", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("s")
    (root / "link").symlink_to(outside)

    with pytest.raises(PolicyError, match=f"resolves to {outside / 'secret'}"):
        InputPolicy(allowed_roots=(root,)).check_path(str(root / "link" / "secret"))


def test_admitted_paths_judges_each_file_by_what_it_resolves_to(tmp_path: Path) -> None:
    root, outside = tmp_path / "data", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("s")
    (root / "kept").write_text("k")
    (root / "plain").write_text("p")
    (root / "escape").symlink_to(outside / "secret")
    (root / "inside").symlink_to(root / "kept")
    paths = [str(root / name) for name in ("plain", "escape", "inside", "a\0b")]

    admitted = InputPolicy(allowed_roots=(root,)).admitted_paths(paths)

    assert admitted == {str(root / "plain"), str(root / "inside")}
    assert InputPolicy().admitted_paths(paths) == set()  # no roots: nothing untrusted


def test_a_root_reached_through_a_symlink_is_compared_by_its_real_path(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    policy = InputPolicy(allowed_roots=(tmp_path / "alias",))

    assert policy.check_path(str(real / "f")) == real.resolve() / "f"


def test_with_no_roots_every_untrusted_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"no allowed_roots are configured.*ALLOWED_ROOTS"):
        InputPolicy().check_path(str(tmp_path / "f"))


@pytest.mark.parametrize(("path", "message"), [("a\0b", "cannot be resolved"), (7, "a string")])
def test_malformed_paths_are_refused(tmp_path: Path, path: Any, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        InputPolicy(allowed_roots=(tmp_path,)).check_path(path)
