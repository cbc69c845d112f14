"""Airflow's `S3KeySensor` (amazon provider) and `HttpSensor` (http provider), on the native waits.

`S3KeySensor` always waits on the native `S3Trigger`, without a slot: `bucket_key` (a key, or
an `s3://bucket/key` URL) and `wildcard_match` choose its key or wildcard; the `aws_conn_id`
connection (from `AIRFLOW_CONN_*`) gives `endpoint_url` and `region_name` from its extras.
Credentials come from the standard AWS chain, as for the native trigger: a connection's login
and password are not stored with a trigger. `HttpSensor` waits on the native `HttpTrigger`
(any 2xx answer), unless it has a `response_check` (a Python callable) or the connection
carries credentials or headers (never stored with a trigger): it then pokes in a worker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from orchestrator.airflow_compat.exceptions import AirflowException, AirflowNotFoundException
from orchestrator.airflow_compat.models import Connection
from orchestrator.airflow_compat.operators import call_with_context
from orchestrator.airflow_compat.sensors import BaseSensorOperator
from triggers.base import Trigger
from triggers.http import HttpTrigger
from triggers.s3 import S3Trigger

_OK = tuple(range(200, 300))


def _connection(conn_id: str | None) -> Connection | None:
    """The connection if `AIRFLOW_CONN_<ID>` defines it; None: the defaults apply."""
    if not conn_id:
        return None
    try:
        return Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        return None


class S3KeySensor(BaseSensorOperator):
    """Wait, without a slot, until the key (or a key matching the wildcard) exists."""

    template_fields: Sequence[str] = ("bucket_key", "bucket_name")

    def __init__(
        self,
        *,
        bucket_key: str | list[str],
        bucket_name: str | None = None,
        wildcard_match: bool = False,
        aws_conn_id: str | None = "aws_default",
        verify: str | bool | None = None,
        check_fn: Callable[..., bool] | None = None,
        use_regex: bool = False,
        **kwargs: Any,
    ) -> None:
        keys = [bucket_key] if isinstance(bucket_key, str) else list(bucket_key)
        if len(keys) != 1:
            raise AirflowException("S3KeySensor waits for one bucket_key here, not a list")
        for name, given in (("check_fn", check_fn), ("use_regex", use_regex)):
            if given:
                raise AirflowException(
                    f"S3KeySensor({name}=...) is not supported: use wildcard_match, or a "
                    "PythonSensor for custom checks"
                )
        self.bucket_key, self.bucket_name = keys[0], bucket_name
        self.wildcard_match, self.aws_conn_id, self.verify = wildcard_match, aws_conn_id, verify
        super().__init__(**kwargs)

    def native_trigger(self, context: Any) -> Trigger | None:
        bucket, key = self._bucket_and_key()
        extra = self._extra()
        return S3Trigger(
            bucket=bucket,
            key=None if self.wildcard_match else key,
            wildcard=key if self.wildcard_match else None,
            poll_interval=self.poke_interval,
            max_poll_interval=max(self.poke_interval, 60.0),
            endpoint_url=extra.get("endpoint_url") or None,
            region_name=extra.get("region_name") or None,
        )

    def _bucket_and_key(self) -> tuple[str, str]:
        """As Airflow: without `bucket_name`, `bucket_key` is a full `s3://bucket/key` URL."""
        if self.bucket_name is not None:
            if self.bucket_key.startswith("s3://"):
                raise AirflowException(
                    "If bucket_name is provided, bucket_key should be relative path from root "
                    "level, rather than a full s3:// url"
                )
            return self.bucket_name, self.bucket_key
        parts = urlsplit(self.bucket_key)
        if parts.scheme != "s3" or not parts.netloc:
            raise AirflowException(
                f"Please provide a bucket name using a valid format: {self.bucket_key!r}"
            )
        return parts.netloc, parts.path.lstrip("/")

    def _extra(self) -> dict[str, Any]:
        connection = _connection(self.aws_conn_id)
        if connection is None:
            return {}
        extra = connection.extra_dejson
        if connection.login or connection.password:
            print(
                f"Connection {self.aws_conn_id!r}: its credentials are not used; the S3 wait "
                "takes them from the AWS chain (environment, profile, instance role)"
            )
        config = extra.get("service_config", {}).get("s3", {})
        return {**extra, **config}


class HttpSensor(BaseSensorOperator):
    """Wait until `endpoint` (under the `http_conn_id` connection's base URL) answers well."""

    template_fields: Sequence[str] = ("endpoint", "request_params", "headers")

    def __init__(
        self,
        *,
        endpoint: str,
        http_conn_id: str = "http_default",
        method: str = "GET",
        request_params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        response_check: Callable[..., bool] | None = None,
        extra_options: dict[str, Any] | None = None,
        response_error_codes_allowlist: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("request_kwargs", None)
        kwargs.pop("tcp_keep_alive", None)
        self.endpoint, self.http_conn_id, self.method = endpoint, http_conn_id, method.upper()
        self.request_params, self.headers = request_params or {}, headers or {}
        self.response_check = response_check
        self.extra_options = extra_options or {}
        self.allowlist = {int(code) for code in response_error_codes_allowlist or ()}
        super().__init__(**kwargs)

    def native_trigger(self, context: Any) -> Trigger | None:
        connection = _connection(self.http_conn_id)
        secret = connection is not None and bool(
            connection.login or connection.password or connection.extra_dejson
        )
        if self.response_check is not None or secret or self.request_params:
            return None  # pokes in the worker: a callable, or values no trigger may store
        return HttpTrigger(
            url=self.url(),
            method=self.method,
            headers=self.headers or None,
            expect_status=_OK,
            poll_interval=self.poke_interval,
            max_poll_interval=max(self.poke_interval, 60.0),
            trusted=True,  # from the DAG file and the connection, not from a run's conf
        )

    def url(self) -> str:
        """As Airflow's HttpHook: the connection's scheme, host and port, then the endpoint."""
        connection = _connection(self.http_conn_id)
        base = ""
        if connection is not None and connection.host:
            host = connection.host
            scheme = connection.schema or "http"
            base = host if "://" in host else f"{scheme}://{host}"
            if connection.port:
                base = f"{base}:{connection.port}"
        if base and self.endpoint and not self.endpoint.startswith("/"):
            return f"{base}/{self.endpoint}"
        return base + (self.endpoint or "")

    def poke(self, context: Any) -> bool:
        import httpx

        print(f"Poking: {self.endpoint}")
        response = httpx.request(
            self.method,
            self.url(),
            params=self.request_params if self.method == "GET" else None,
            data=None if self.method == "GET" else self.request_params,
            headers={**self._connection_headers(), **self.headers},
            auth=self._auth(),
            timeout=self.extra_options.get("timeout", 10.0),
            follow_redirects=self.extra_options.get("allow_redirects", True),
        )
        if response.status_code >= 400 and response.status_code not in self.allowlist:
            if response.status_code == 404:
                return False
            raise AirflowException(f"{response.status_code}:{response.reason_phrase}")
        if self.response_check is not None:
            return bool(call_with_context(self.response_check, [response], {}, context))
        return True

    def _connection_headers(self) -> dict[str, str]:
        connection = _connection(self.http_conn_id)
        extra = connection.extra_dejson if connection is not None else {}
        return {str(k): str(v) for k, v in extra.items() if isinstance(v, str)}

    def _auth(self) -> tuple[str, str] | None:
        connection = _connection(self.http_conn_id)
        if connection is None or not connection.login:
            return None
        return connection.login, connection.password or ""


__all__ = ("HttpSensor", "S3KeySensor")
