"""The input policy: which URLs and paths untrusted input may name.

URLs and paths written in DAG code are trusted and never checked: whoever writes DAG code can
already run any code. A URL or path taken from untrusted input (a run's `conf`, a webhook
payload, an event) must pass `InputPolicy` first, so that a crafted payload cannot make the
daemon read `/etc/shadow`, call an admin port on loopback, or fetch cloud credentials from a
metadata endpoint (server-side request forgery).

- `check_path` admits a path only if its real path (symlinks and `..` resolved) lies under the
  real path of one of `allowed_roots`. With no roots configured, every untrusted path is refused.
  `admitted_paths` applies the same rule to what a checked folder holds: a symlink in it is
  judged by its target.
- `check_url` admits only http(s) URLs whose host is public: the host is read as an IP literal in
  every spelling a resolver accepts (`2852039166`, `0xA9FEA9FE`, `0251.0376.0251.0376`, `127.1`,
  `[::ffff:169.254.169.254]`), otherwise resolved, and *every* address it resolves to must be
  public. `allow_private_urls` admits loopback and private networks; `allowed_hosts` admits
  named hosts (or host:port pairs) an operator trusts.
- Cloud metadata endpoints stay refused even with `allow_private_urls`: a service on the private
  network is a reasonable thing to poll, the instance's credentials never are. Only an explicit
  `allowed_hosts` entry admits one.
- `policy_checked_client` is an httpx client that checks every request, each redirect hop
  included, before it is sent.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from orchestrator.errors import ConfigError, PolicyError

if TYPE_CHECKING:
    import httpx

    from orchestrator.config import Settings

IPAddress = IPv4Address | IPv6Address

#: Resolves `(host, port)` to address strings; the default calls `anyio.getaddrinfo`.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ip_address(text) for text in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata"})

_METADATA = "a cloud metadata endpoint"
_SHARED_NETWORK = ip_network("100.64.0.0/10")
_NAT64_NETWORK = ip_network("64:ff9b::/96")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ROOTS_HINT = "set allowed_roots in orchestrator.toml or ORCHESTRATOR_ALLOWED_ROOTS"
_URL_HINT = "set allow_private_urls, or add the host or host:port to allowed_hosts"
_METADATA_HINT = "only an allowed_hosts entry admits one, allow_private_urls does not"
# One part of an inet_aton address: hex, octal (leading 0) or decimal.
_ADDRESS_PART = re.compile(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*")


@dataclass(frozen=True)
class InputPolicy:
    """What untrusted input may name. URLs and paths written in DAG code are not checked."""

    allowed_roots: tuple[Path, ...] = ()
    allow_private_urls: bool = False
    #: "host" or "host:port" (IPv6 as "[::1]:8080") an operator trusts even if it is private.
    allowed_hosts: tuple[str, ...] = ()
    #: None resolves with `anyio.getaddrinfo`; tests may inject a fake.
    resolver: Resolver | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for entry in self.allowed_hosts:
            _parse_allowed_host(entry)  # a typo is reported now, not on the first request

    @classmethod
    def from_settings(cls, settings: Settings) -> InputPolicy:
        """The policy the operator configured in orchestrator.toml or the environment."""
        return cls(
            allowed_roots=tuple(settings.allowed_roots),
            allow_private_urls=settings.allow_private_urls,
            allowed_hosts=tuple(getattr(settings, "allowed_hosts", ())),
        )

    def check_path(self, path: str) -> Path:
        """The resolved path, if it stays under an allowed root; else `PolicyError`."""
        if not isinstance(path, str | os.PathLike):
            raise PolicyError(f"an untrusted path must be a string, got {path!r}")
        if not self.allowed_roots:
            raise PolicyError(
                f"untrusted path {str(path)!r} is refused: no allowed_roots are configured,"
                f" so untrusted input may name no file ({_ROOTS_HINT})"
            )
        resolved = _real_path(path)
        roots = self._real_roots()
        if _is_under_any(resolved, roots):
            return resolved
        shown = ", ".join(str(root) for root in roots)
        raise PolicyError(
            f"untrusted path {str(path)!r} resolves to {resolved}, which is outside the"
            f" allowed roots ({shown}); {_ROOTS_HINT} to admit another folder"
        )

    def admitted_paths(self, paths: Iterable[str]) -> set[str]:
        """Those of `paths` whose real path lies under an allowed root. Blocking: use a thread.

        For the files inside a checked folder: a symlink there may point anywhere, and what an
        untrusted caller gets to read is its target, so the target is what is judged.
        """
        if not self.allowed_roots:
            return set()
        roots = self._real_roots()
        admitted = set()
        for path in paths:
            try:
                resolved = _real_path(path)
            except PolicyError:
                continue
            if _is_under_any(resolved, roots):
                admitted.add(path)
        return admitted

    def _real_roots(self) -> list[Path]:
        return [_real_path(root) for root in self.allowed_roots]

    async def check_url(self, url: str) -> None:
        """Raise `PolicyError` unless `url` is http(s) and resolves only to public addresses."""
        parsed = _parse_url(url)
        host = parsed.raw_host.decode("ascii")
        port = parsed.port or _DEFAULT_PORTS[parsed.scheme]
        if self._is_allowed_host(host, port):
            return
        if _normal_name(host) in METADATA_NAMES:
            raise PolicyError(
                f"untrusted URL {url!r} is refused: {host} is {_METADATA}; {_METADATA_HINT}"
            )
        for address in await self._addresses_of(url, host, port):
            self._check_address(url, host, address)

    def _is_allowed_host(self, host: str, port: int) -> bool:
        wanted = _normal_host(host)
        return any(
            allowed == wanted and allowed_port in (None, port)
            for allowed, allowed_port in map(_parse_allowed_host, self.allowed_hosts)
        )

    async def _addresses_of(self, url: str, host: str, port: int) -> list[IPAddress]:
        literal = ip_literal(host)
        if literal is not None:
            return [literal]
        try:
            found = await (self.resolver or resolve_host)(host, port)
        except (OSError, UnicodeError) as error:
            raise PolicyError(
                f"untrusted URL {url!r} is refused: {host} cannot be resolved ({error})"
            ) from None
        if not found:
            raise PolicyError(f"untrusted URL {url!r} is refused: {host} resolves to no address")
        return [_without_scope(ip_address(text.partition("%")[0])) for text in found]

    def _check_address(self, url: str, host: str, address: IPAddress) -> None:
        reason = refusal_reason(address)
        if reason is None or (self.allow_private_urls and not is_metadata_address(address)):
            return
        shown = host if ip_literal(host) == address else f"{host} ({address})"
        hint = _METADATA_HINT if is_metadata_address(address) else _URL_HINT
        raise PolicyError(f"untrusted URL {url!r} is refused: {shown} is {reason}; {hint}")


def refusal_reason(address: IPAddress) -> str | None:
    """Why untrusted input may not reach `address` (e.g. "a loopback address"), or None."""
    address = _without_scope(address)
    if is_metadata_address(address):
        return _METADATA
    for inner in _ipv4_inside(address):
        reason = _category_of(inner)
        if reason is not None:
            return f"{reason} ({inner}) written as IPv6"
    if address.version == 6 and (address.ipv4_mapped or address in _NAT64_NETWORK):
        return None  # these *are* their IPv4 address, judged above, and ::/8 counts as reserved
    return _category_of(address)


def is_metadata_address(address: IPAddress) -> bool:
    """Whether `address` is a cloud metadata endpoint, in any IPv6 wrapping of its IPv4 form."""
    address = _without_scope(address)
    return address in METADATA_ADDRESSES or not METADATA_ADDRESSES.isdisjoint(_ipv4_inside(address))


def _category_of(address: IPAddress) -> str | None:
    categories = (
        (address.is_loopback, "a loopback address"),
        (address.is_unspecified, "the unspecified address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address in _SHARED_NETWORK, "a shared (carrier-grade NAT) address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        (not address.is_global, "not a public address"),
    )
    return next((reason for matches, reason in categories if matches), None)


def _ipv4_inside(address: IPAddress) -> Iterator[IPv4Address]:
    """IPv4 addresses an IPv6 address leads to: mapped, NAT64, 6to4 and Teredo forms."""
    if isinstance(address, IPv4Address):
        return
    if address.ipv4_mapped is not None:
        yield address.ipv4_mapped
    if address in _NAT64_NETWORK:
        yield IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        yield address.sixtofour
    if address.teredo is not None:
        yield from address.teredo


def ip_literal(host: str) -> IPAddress | None:
    """`host` as an IP address if a resolver would read it as one, in any spelling, else None.

    Besides the usual forms, resolvers accept inet_aton's: one to four parts, each decimal, hex
    (`0x`) or octal (leading `0`), the last part filling the remaining bytes (`127.1`,
    `2852039166`). Reading them here means a literal is never sent to DNS at all.
    """
    try:
        return _without_scope(ip_address(host.partition("%")[0]))
    except ValueError:
        return _inet_aton(host)


def _inet_aton(host: str) -> IPv4Address | None:
    parts = host.split(".")
    if len(parts) > 4 or not all(_ADDRESS_PART.fullmatch(part) for part in parts):
        return None
    *head, last = [_part_value(part) for part in parts]
    if any(value > 0xFF for value in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    number = last
    for index, value in enumerate(head):
        number |= value << (8 * (3 - index))
    return IPv4Address(number)


def _part_value(part: str) -> int:
    if part[:2].lower() == "0x":
        return int(part[2:], 16)
    return int(part, 8) if part.startswith("0") else int(part)


def _without_scope(address: IPAddress) -> IPAddress:
    # fe80::1%eth0 is still fe80::1; the scope must not make it unequal to a listed address.
    if isinstance(address, IPv6Address) and address.scope_id:
        return IPv6Address(str(address).partition("%")[0])
    return address


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, as the connection will resolve it (getaddrinfo)."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(sockaddr[0]) for *_, sockaddr in infos]


def _parse_url(url: str) -> httpx.URL:
    # httpx parses here so that the policy reads a URL exactly as the client will send it: two
    # parsers that disagree on the host are a classic way around a check like this one.
    # Imported late: it costs a tenth of a second, and most commands never check a URL.
    import httpx

    if not isinstance(url, str):
        raise PolicyError(f"an untrusted URL must be a string, got {url!r}")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise PolicyError(
            f"untrusted URL {url!r} is refused: it is not a valid URL ({error})"
        ) from None
    if parsed.scheme not in _DEFAULT_PORTS:
        raise PolicyError(
            f"untrusted URL {url!r} is refused: scheme {parsed.scheme!r} is not allowed"
            " (only http and https)"
        )
    if not parsed.raw_host:
        raise PolicyError(f"untrusted URL {url!r} is refused: it names no host")
    return parsed


def _parse_allowed_host(entry: str) -> tuple[str, int | None]:
    """`(normal host, port or None)` of an allowed_hosts entry: host, host:port, [v6]:port."""
    if not isinstance(entry, str) or not entry.strip():
        raise ConfigError(f"allowed_hosts entries must be 'host' or 'host:port', got {entry!r}")
    host, port = entry.strip(), ""
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        port = rest.removeprefix(":")
    elif host.count(":") == 1:
        host, port = host.split(":")
    if not host or (port and not (port.isdigit() and 0 < int(port) < 65536)):
        raise ConfigError(
            f"allowed_hosts entry {entry!r} is not 'host' or 'host:port' with a port in 1-65535"
        )
    return _normal_host(host), int(port) if port else None


def _normal_host(host: str) -> str:
    """One spelling per host: `127.1` and `127.0.0.1` agree, names lose case and final dot."""
    literal = ip_literal(host)
    return str(literal) if literal is not None else _normal_name(host)


def _normal_name(host: str) -> str:
    return host.lower().rstrip(".")


def _is_under_any(resolved: Path, roots: Sequence[Path]) -> bool:
    return any(resolved.is_relative_to(root) for root in roots)


def _real_path(path: str | os.PathLike[str]) -> Path:
    # realpath resolves symlinks and `..` as far as the path exists, so a file that is yet to
    # be written is judged by the real folder it would land in.
    try:
        return Path(os.path.realpath(path))
    except (OSError, ValueError) as error:
        raise PolicyError(f"untrusted path {str(path)!r} cannot be resolved: {error}") from None


def policy_checked_client(policy: InputPolicy, **httpx_kwargs: Any) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` that checks every request's URL with `policy` before sending it.

    httpx calls request hooks for each hop of a redirect chain, so a public URL that redirects
    to 169.254.169.254 is refused before that second request leaves. A caller's own
    `event_hooks` are kept and run after the check.

    The check resolves the host, then httpx resolves it again to connect: a DNS server that
    answers differently the second time (DNS rebinding) can slip through that window. Closing
    it needs a transport that connects to the checked address; until then the README (under
    "Waiting without a slot") tells users, with what to do instead: `allowed_hosts`, or
    private ranges blocked in the network.
    """
    import httpx

    hooks = dict(httpx_kwargs.pop("event_hooks", None) or {})
    hooks["request"] = [_request_check(policy), *hooks.get("request", ())]
    return httpx.AsyncClient(event_hooks=hooks, **httpx_kwargs)


def _request_check(policy: InputPolicy) -> Callable[[httpx.Request], Awaitable[None]]:
    async def check_request(request: httpx.Request) -> None:
        await policy.check_url(str(request.url))

    return check_request
