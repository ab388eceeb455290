"""Edges of the mover's pure parts that a review found broken (no store needed): part sizes of huge objects,
backoff far into a restore, errors no retry can fix, restore error codes, settings that break the memory bound."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from botocore.exceptions import ClientError, NoCredentialsError, ParamValidationError
from pydantic import ValidationError

from dim.config import MoverSettings
from mover.archive import ensure_restored
from mover.retry import ErrorKind, backoff_s, classify
from mover.s3ops import MAX_PARTS, MiB, ObjectInfo, PermanentError, part_step

GiB = 1024**3


@pytest.mark.parametrize("size", [0, 1, 78 * GiB, 80 * GiB, 700 * GiB, 5 * 1024 * GiB])
def test_an_object_of_any_s3_size_fits_in_10000_parts(size):
    for configured in (8 * MiB, 64 * MiB):
        step = part_step(size, configured)
        assert step >= configured and step % MiB == 0 and -(-size // step) <= MAX_PARTS
        if size <= configured * MAX_PARTS:
            assert step == configured  # objects that fit keep the configured part size
    with pytest.raises(PermanentError, match="more than S3 can hold"):
        part_step(60 * 1024 * GiB, 8 * MiB)


def test_backoff_far_into_a_restore_stays_a_number():
    rng = random.Random(1)
    assert all(0 <= backoff_s(n, 0.2, 60.0, rng) <= 60.0 for n in (0, 10, 1023, 1024, 10**6))


def test_a_request_no_retry_can_fix_fails_at_once():
    assert classify(ParamValidationError(report="Invalid bucket name")) is ErrorKind.PERMANENT
    assert classify(NoCredentialsError()) is ErrorKind.PERMANENT
    slow = ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutObject")
    assert classify(slow) is ErrorKind.RETRY


class RefusingStore:
    """A store whose RestoreObject answers with `code`; HEAD says the restore is still going on."""

    def __init__(self, code: str):
        self.code, self.stats, self.heads = code, Counter(), 0

    def bucket(self, location):
        return "dim-archive"

    def endpoint(self, location):
        return "http://archive"

    def call(self, endpoint, what, fn):
        raise PermanentError(f"{what}: {self.code} (HTTP 403): no", self.code)

    def head(self, location, key):
        self.heads += 1
        return ObjectInfo(size=1, etag="e", last_modified=0.0, restore='ongoing-request="true"')


def test_a_refused_restore_is_judged_by_its_error_code_not_by_the_key():
    # the key contains "0501": the reason string did too, and a 403 AccessDenied read as "501 NotImplemented"
    with pytest.raises(PermanentError, match="AccessDenied"):
        ensure_restored(RefusingStore("AccessDenied"), "aws:us-east-1:deep-archive", "b/logs/2024/0501.parquet",
                        MoverSettings(), sleep=lambda s: None)
    assert ensure_restored(RefusingStore("NotImplemented"), "aws:us-east-1:deep-archive", "b/k", MoverSettings(),
                           sleep=lambda s: None) == 0.0  # a store without archive tiers: readable now


def test_settings_keep_the_memory_bound_and_wait_for_real_restores():
    with pytest.raises(ValidationError, match="must not exceed max_buffer_bytes"):
        MoverSettings(part_size=128 * MiB, max_buffer_bytes=64 * MiB)
    # the catalogue's archive tiers restore in up to 15 h: the default timeout must not fail such moves
    assert MoverSettings().restore_timeout_s >= 15 * 3600
