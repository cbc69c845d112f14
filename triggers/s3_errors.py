"""What an S3 or connection error means: worth retrying after a backoff, or the user's to fix.

Kept apart from the trigger so the same reading serves every call it makes (HeadObject,
ListObjectsV2, HeadBucket) and is tested on its own.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, SSLError
from botocore.exceptions import ConnectionError as BotoConnectionError

# S3 and the AWS SDKs name throttling in several ways; all of them mean "slow down and retry".
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "RequestLimitExceeded",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
    }
)


def is_transient(error: ClientError | BotoCoreError) -> bool:
    """Throttling, 5xx and connection failures: worth retrying after a backoff."""
    if isinstance(error, ClientError):
        code = code_of(error)
        status = status_of(error)
        return (
            code in _TRANSIENT_CODES or code.startswith("Throttl") or status == 429 or status >= 500
        )
    if isinstance(error, SSLError):  # a certificate does not fix itself
        return False
    return isinstance(error, BotoConnectionError | HTTPClientError)


def describe(error: ClientError | BotoCoreError) -> str:
    """The S3 error code and message (or the connection error), for a user to act on."""
    if isinstance(error, ClientError):
        code, status = code_of(error), status_of(error)
        message = error.response.get("Error", {}).get("Message", "")
        if code.isdigit():  # a HEAD response has no body, so S3 could not name the error
            hint = " (access denied or invalid credentials)" if status == 403 else ""
            return f"HTTP {status} {message}{hint}"
        return f"{code} (HTTP {status}): {message}"
    return f"{type(error).__name__}: {error}"


def code_of(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def status_of(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def no_such_bucket(error: ClientError) -> ClientError:
    """HeadBucket's bare 404, given the code S3 uses everywhere else."""
    response: Any = {
        "Error": {"Code": "NoSuchBucket", "Message": "The specified bucket does not exist"},
        "ResponseMetadata": error.response.get("ResponseMetadata", {"HTTPStatusCode": 404}),
    }
    return ClientError(response, error.operation_name)
