"""Which S3 errors are worth retrying, and how long to wait: pure functions, no I/O."""

from __future__ import annotations

import random
from enum import Enum

# Throttling and transient server trouble: retry with backoff.
RETRYABLE_CODES = frozenset({
    "429", "500", "502", "503", "504", "SlowDown", "RequestTimeout", "RequestTimeoutException",
    "InternalError", "ServiceUnavailable", "Throttling", "ThrottlingException", "TooManyRequests",
    "RequestLimitExceeded", "BadDigest", "IncompleteBody", "XAmzContentSHA256Mismatch",
})
# Conditions that mean "the object is not what you expected": the caller decides (e.g. file_growing).
PRECONDITION_CODES = frozenset({"412", "PreconditionFailed", "ConditionalRequestConflict"})
# Anything else (403, 404, NoSuchKey, InvalidArgument, ...) is permanent: fail at once with the reason.


class ErrorKind(str, Enum):
    RETRY = "retry"
    PRECONDITION = "precondition"
    PERMANENT = "permanent"


def classify_code(code: str, status: int | None) -> ErrorKind:
    if code in PRECONDITION_CODES or status == 412:
        return ErrorKind.PRECONDITION
    if code in RETRYABLE_CODES or status in (429, 500, 502, 503, 504):
        return ErrorKind.RETRY
    return ErrorKind.PERMANENT


def classify(exc: BaseException) -> ErrorKind:
    """Kind of a botocore/urllib3/OS exception."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        HTTPClientError,
        IncompleteReadError,
        NoCredentialsError,
        NoRegionError,
        ParamValidationError,
        PartialCredentialsError,
        ReadTimeoutError,
        ResponseStreamingError,
    )
    from botocore.exceptions import (
        ConnectionError as BotoConnectionError,
    )

    if isinstance(exc, ClientError):
        return classify_code(*_code_status(exc)[:2])
    if isinstance(exc, (BotoConnectionError, HTTPClientError, ReadTimeoutError, IncompleteReadError,
                        ResponseStreamingError, ConnectionError, TimeoutError)):
        return ErrorKind.RETRY
    if isinstance(exc, (ParamValidationError, NoCredentialsError, PartialCredentialsError, NoRegionError)):
        return ErrorKind.PERMANENT  # a bad request or missing credentials: the same on every attempt
    if isinstance(exc, BotoCoreError):
        # e.g. a response body cut short or unparsable XML from a broken connection
        return ErrorKind.RETRY
    if isinstance(exc, OSError):
        return ErrorKind.RETRY
    return ErrorKind.PERMANENT


def _code_status(exc) -> tuple[str, int | None, str]:
    """(error code, HTTP status, message) of a botocore ClientError."""
    err = exc.response.get("Error", {})
    return str(err.get("Code", "")), exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"), \
        str(err.get("Message", ""))


def error_code(exc: BaseException) -> str:
    """The S3 error code of a ClientError ("" for anything else), and its HTTP status as a fallback."""
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return ""
    code, status, _ = _code_status(exc)
    return code or str(status or "")


def error_reason(exc: BaseException) -> str:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        code, status, message = _code_status(exc)
        return f"{code or '?'} (HTTP {status}): {message}".strip()
    return f"{type(exc).__name__}: {exc}"


def backoff_s(attempt: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform(0, min(max, base * 2^attempt)), attempt counted from 0."""
    rng = rng or random
    # 2 ** 1024 is no float: restore polls of a long archive restore reach that attempt (mover/archive.py)
    return rng.uniform(0.0, min(max_s, base_s * (2 ** min(attempt, 60))))
