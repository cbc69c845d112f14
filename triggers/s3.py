"""S3Trigger: one event per new object, or new version of an object, in an S3 bucket.

S3 cannot push to us without bucket notifications, so this trigger polls (DESIGN §5.6): a
HeadObject for one key, or a ListObjectsV2 that starts after a persisted cursor for a prefix or
a wildcard, so a poll costs O(new keys) however large the bucket is. Keys that sort before the
cursor and objects overwritten in place (a new ETag) are caught by a full listing every
`full_scan_every` polls. Credentials never appear in the trigger's fields: they come from the
standard AWS chain (environment, shared config and profile, instance metadata).
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, aclosing, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, NamedTuple

import anyio
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError

from orchestrator.errors import TriggerError
from triggers.base import JSON, Trigger, TriggerEvent, current_runtime
from triggers.s3_arguments import WILDCARD_CHARACTERS, check_arguments
from triggers.s3_errors import describe, is_transient, no_such_bucket, status_of

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import ListObjectsV2RequestTypeDef, ObjectTypeDef

logger = logging.getLogger(__name__)

_CLOSE_TIMEOUT = 5.0  # seconds; closing a client only drops pooled connections

# S3's LastModified is when an upload *started*, so an object can appear in a listing with a
# time earlier than objects already seen. A resumed run re-yields keys modified this close to
# its saved watermark (repeats carry the same dedup key) rather than risk missing one.
_LATE_UPLOAD_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True, kw_only=True)
class S3Trigger(Trigger):
    """Fire once per new object version (key and ETag) under `key`, `prefix` or `wildcard`.

    Give exactly one of `key` (one object), `prefix` (anything under it) or `wildcard` (an
    fnmatch pattern over whole keys). With `prefix`, `marker` (say "_SUCCESS") waits for the
    object `prefix + marker` instead, and its event counts the other keys under the prefix.
    Transient failures (throttling, 5xx, connection errors) back off up to `max_attempts` in a
    row; permanent ones (NoSuchBucket, AccessDenied, bad credentials) raise `TriggerError` at once.
    """

    bucket: str
    key: str | None = None
    prefix: str | None = None
    wildcard: str | None = None
    min_size: int = 0
    marker: str | None = None
    poll_interval: float = 5.0
    max_poll_interval: float = 300.0
    jitter: float = 0.1
    max_attempts: int = 5
    full_scan_every: int = 20
    endpoint_url: str | None = None
    region_name: str | None = None
    profile: str | None = None

    def __post_init__(self) -> None:
        check_arguments(self)

    async def run(self) -> AsyncGenerator[TriggerEvent, None]:
        """Poll until closed, yielding each new object version once; backs off on failures."""
        runtime = current_runtime()
        async with self._client() as client:
            watch = _Watch(self, client, runtime.cursor, save_cursor=runtime.save_cursor)
            failures = 0
            while True:
                try:
                    async with aclosing(watch.check()) as events:
                        async for event in events:
                            yield event
                    failures = 0
                except (ClientError, BotoCoreError) as error:
                    failures += 1
                    watch.raise_unless_retryable(error, failures, then="backing off")
                clock = runtime.clock
                await clock.sleep_until(clock.now() + self._next_delay(failures))

    async def poll(self) -> TriggerEvent | None:
        """One head or listing: the first matching object's event, or None.

        A transient failure is logged and reads as "not yet": the sensor calling `poll` checks
        again on its next poke, which is its retry. Permanent failures raise `TriggerError`.
        """
        async with self._client() as client:
            watch = _Watch(self, client, current_runtime().cursor)
            try:
                async with aclosing(watch.check()) as events:
                    async for event in events:
                        return event
            except (ClientError, BotoCoreError) as error:
                watch.raise_unless_retryable(error, 1, then="checking again on the next poke")
        return None

    @property
    def listing_prefix(self) -> str:
        """What ListObjectsV2 is asked for: the prefix, or the wildcard's literal start."""
        if self.wildcard is not None:
            cut = next(i for i, c in enumerate(self.wildcard) if c in WILDCARD_CHARACTERS)
            return self.wildcard[:cut]
        return self.prefix or ""

    @asynccontextmanager
    async def _client(self) -> AsyncGenerator[S3Client, None]:
        """One client (and connection pool) for a whole run, closed however the run ends."""
        stack = AsyncExitStack()
        try:
            yield await self._open_client(stack)
        finally:
            # Shielded: a triggerer cancelling this run must still release the pool.
            with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
                await stack.aclose()

    async def _open_client(self, stack: AsyncExitStack) -> S3Client:
        # botocore's own retries would sleep on the real clock and multiply with our backoff.
        config = AioConfig(retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=60)
        if self.endpoint_url is not None:
            # MinIO, moto and most S3-compatible stores serve buckets as paths, not subdomains.
            config = config.merge(AioConfig(s3={"addressing_style": "path"}))
        try:
            session = AioSession(profile=self.profile) if self.profile else get_session()
            context = session.create_client(
                "s3", endpoint_url=self.endpoint_url, region_name=self.region_name, config=config
            )
            return await stack.enter_async_context(context)
        except BotoCoreError as error:
            where = self.endpoint_url or "AWS"
            raise TriggerError(
                f"cannot create an S3 client for bucket {self.bucket!r} at {where}: {error}"
            ) from error

    def _next_delay(self, failures: int) -> float:
        """Seconds until the next poll: the interval, doubled per failure, capped, jittered."""
        delay = min(self.poll_interval * 2.0**failures, self.max_poll_interval)
        return delay * random.uniform(1 - self.jitter, 1 + self.jitter)


# -- one run's view of the bucket ------------------------------------------------------------------


class _Object(NamedTuple):
    """One version of one object, as S3 described it."""

    key: str
    size: int
    etag: str
    last_modified: datetime

    @classmethod
    def listed(cls, item: ObjectTypeDef) -> _Object:
        return cls(item["Key"], item["Size"], item["ETag"].strip('"'), item["LastModified"])


@dataclass(frozen=True)
class _Cursor:
    """Where listings resume (`StartAfter`), and the newest LastModified seen before that.

    Persisted as JSON with `save_cursor`, so a restarted trigger lists only newer keys and can
    tell, in its full scans, the keys an earlier run already yielded from ones it never saw.
    """

    start_after: str | None = None
    modified_since: datetime | None = None

    @classmethod
    def from_json(cls, value: JSON) -> _Cursor:
        if value is None:
            return cls()
        try:
            start_after, since = value["start_after"], value.get("modified_since")
            if not isinstance(start_after, str | None):
                raise TypeError(start_after)
            since = datetime.fromisoformat(since) if since else None
            if since is not None and since.tzinfo is None:
                since = since.replace(tzinfo=UTC)  # we always save UTC; comparisons need a zone
            return cls(start_after, since)
        except (AttributeError, KeyError, TypeError, ValueError):
            logger.warning("ignoring an S3 cursor we cannot read: %r", value)
            return cls()

    def to_json(self) -> JSON:
        since = self.modified_since.astimezone(UTC).isoformat() if self.modified_since else None
        return {"start_after": self.start_after, "modified_since": since}

    def noting(self, modified: datetime) -> _Cursor:
        if self.modified_since is not None and modified <= self.modified_since:
            return self
        return dataclasses.replace(self, modified_since=modified)

    def covers(self, found: _Object) -> bool:
        """Whether the run that saved this cursor already listed (and yielded) `found`."""
        if self.start_after is None or self.modified_since is None:
            return False
        old_enough = found.last_modified <= self.modified_since - _LATE_UPLOAD_MARGIN
        return found.key <= self.start_after and old_enough


class _Watch:
    """What one run (or one `poll`) knows: the versions it yielded and where listings resume."""

    def __init__(
        self,
        trigger: S3Trigger,
        client: S3Client,
        cursor: JSON,
        save_cursor: Callable[[JSON], Awaitable[None]] | None = None,
    ) -> None:
        self.trigger = trigger
        self.client = client
        self.cursor = self.restored = _Cursor.from_json(cursor)
        self.save_cursor = save_cursor  # None outside a host: the cursor lives in memory only
        self.seen: dict[str, str] = {}  # key -> ETag of the version already yielded (or skipped)
        self.polls = 0
        self.bucket_confirmed = False

    async def check(self) -> AsyncGenerator[TriggerEvent, None]:
        """One poll: a head in key and marker modes, a listing otherwise."""
        self.polls += 1
        if self.trigger.key is None and self.trigger.marker is None:
            async with aclosing(self._check_listing()) as events:
                async for event in events:
                    yield event
        elif (found := await self._check_one_object()) is not None:
            yield found

    async def _check_one_object(self) -> TriggerEvent | None:
        trigger = self.trigger
        key = trigger.key if trigger.key is not None else f"{trigger.prefix}{trigger.marker}"
        found = await self._head(key)
        if found is None or self.seen.get(key) == found.etag:
            return None
        extra = {} if trigger.marker is None else {"key_count": await self._count_keys(key)}
        self.seen[key] = found.etag  # only now: a failed count is retried, not lost
        return self._event(found, **extra) if found.size >= trigger.min_size else None

    async def _check_listing(self) -> AsyncGenerator[TriggerEvent, None]:
        """List from the cursor (or from the start, every `full_scan_every` polls)."""
        full_scan = self.polls % self.trigger.full_scan_every == 0
        params: ListObjectsV2RequestTypeDef = {"Bucket": self.trigger.bucket}
        params["Prefix"] = self.trigger.listing_prefix
        if self.cursor.start_after is not None and not full_scan:
            params["StartAfter"] = self.cursor.start_after
        while True:
            page = await self.client.list_objects_v2(**params)
            items = page.get("Contents", [])
            for item in items:
                if (event := self._consider(_Object.listed(item))) is not None:
                    yield event
            await self._advance_cursor(items)  # after the yields: a crash re-lists, never skips
            if not page.get("IsTruncated"):
                return
            params["ContinuationToken"] = page["NextContinuationToken"]

    def _consider(self, found: _Object) -> TriggerEvent | None:
        if self.trigger.wildcard is not None and not fnmatchcase(found.key, self.trigger.wildcard):
            return None
        self.cursor = self.cursor.noting(found.last_modified)
        previous = self.seen.get(found.key)
        if previous == found.etag:
            return None
        self.seen[found.key] = found.etag
        if previous is None and self.restored.covers(found):
            return None
        return self._event(found) if found.size >= self.trigger.min_size else None

    async def _advance_cursor(self, items: Sequence[ObjectTypeDef]) -> None:
        if not items or (self.cursor.start_after or "") >= items[-1]["Key"]:
            return
        self.cursor = dataclasses.replace(self.cursor, start_after=items[-1]["Key"])
        if self.save_cursor is not None:
            await self.save_cursor(self.cursor.to_json())

    async def _head(self, key: str) -> _Object | None:
        try:
            head = await self.client.head_object(Bucket=self.trigger.bucket, Key=key)
        except ClientError as error:
            if status_of(error) != 404:
                raise
            await self._confirm_bucket()
            return None
        return _Object(key, head["ContentLength"], head["ETag"].strip('"'), head["LastModified"])

    async def _confirm_bucket(self) -> None:
        """Tell a missing bucket from a missing key: HEAD answers 404 for both, without a code."""
        if self.bucket_confirmed:
            return
        try:
            await self.client.head_bucket(Bucket=self.trigger.bucket)
        except ClientError as error:
            if status_of(error) == 404:
                raise no_such_bucket(error) from error
            raise
        self.bucket_confirmed = True

    async def _count_keys(self, marker_key: str) -> int:
        params: ListObjectsV2RequestTypeDef = {"Bucket": self.trigger.bucket}
        params["Prefix"] = self.trigger.listing_prefix
        count = 0
        while True:
            page = await self.client.list_objects_v2(**params)
            count += sum(item["Key"] != marker_key for item in page.get("Contents", []))
            if not page.get("IsTruncated"):
                return count
            params["ContinuationToken"] = page["NextContinuationToken"]

    def _event(self, found: _Object, **extra: JSON) -> TriggerEvent:
        bucket = self.trigger.bucket
        payload = {
            "bucket": bucket,
            "key": found.key,
            "size": found.size,
            "etag": found.etag,
            "last_modified": found.last_modified.astimezone(UTC).isoformat(),
            **extra,
        }
        return TriggerEvent(payload, dedup_key=f"s3://{bucket}/{found.key}@{found.etag}")

    def raise_unless_retryable(
        self, error: ClientError | BotoCoreError, failures: int, *, then: str
    ) -> None:
        """Raise `TriggerError` for a permanent error or too many failures; else log a warning."""
        where = f"bucket {self.trigger.bucket!r} at {self.client.meta.endpoint_url}"
        operation = getattr(error, "operation_name", "request")
        if not is_transient(error):
            raise TriggerError(f"S3 {operation} on {where} failed: {describe(error)}") from error
        if failures >= self.trigger.max_attempts:
            raise TriggerError(
                f"S3 {operation} on {where} failed {failures} time(s) in a row, giving up:"
                f" {describe(error)}"
            ) from error
        logger.warning(
            "S3 %s on %s failed (attempt %d of %d), %s: %s",
            *(operation, where, failures, self.trigger.max_attempts, then, describe(error)),
        )
