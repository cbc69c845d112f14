"""A real S3 API for tests: moto's threaded server on 127.0.0.1, on a free port.

```python
def test_something(monkeypatch: pytest.MonkeyPatch) -> None:
    with running_s3_server(monkeypatch) as endpoint_url:
        ...  # aiobotocore clients built with endpoint_url, dummy credentials from the env
```

moto keeps its buckets in process-wide memory, shared by every server in the process, so the
server is reset when it stops: each test starts from an empty S3.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from moto.server import ThreadedMotoServer

DUMMY_ACCESS_KEY_ID = "testing-access-key"
DUMMY_SECRET_ACCESS_KEY = "testing-secret-key"
REGION = "us-east-1"


@contextmanager
def running_s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Start moto's S3 on 127.0.0.1 (a free port); yield its endpoint URL; stop and reset it."""
    use_dummy_credentials(monkeypatch)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint_url = f"http://{host}:{port}"
    try:
        yield endpoint_url
    finally:
        _post(endpoint_url, "/moto-api/reset-auth", b"inf")  # authentication off again
        _post(endpoint_url, "/moto-api/reset", b"")
        server.stop()


def use_dummy_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials and region from the environment only: no real profile or instance metadata.

    Pointing the config files at a path that does not exist keeps a developer's ~/.aws out of
    the tests, and loopback must never go through a proxy.
    """
    missing = "/nonexistent/aws-config-absent"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY_ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", missing)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", missing)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


def require_authentication(endpoint_url: str) -> None:
    """Make the server check credentials from now on (moto accepts any by default).

    Unknown access keys then get `InvalidAccessKeyId`; `running_s3_server` turns checking off
    again when it stops.
    """
    _post(endpoint_url, "/moto-api/reset-auth", b"0")


def put_objects_in_process(bucket: str, objects: Iterable[tuple[str, bytes]]) -> None:
    """Store objects straight into the in-process moto backend: fast seeding for big listings.

    3,000 PUTs over HTTP take about 10 s on two cores; this takes a fraction of a second. What
    is under test (the reader) still goes over HTTP. The bucket must already exist.
    """
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    for key, body in objects:
        backend.put_object(bucket, key, body)


def _post(endpoint_url: str, path: str, body: bytes) -> None:
    request = urllib.request.Request(
        endpoint_url + path, data=body, method="POST", headers={"Content-Type": "text/plain"}
    )
    # Loopback only: an explicit opener without proxies, whatever the environment says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        response.read()
