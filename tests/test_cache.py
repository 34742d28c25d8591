"""The value cache: the one owner of values and permanent failures."""

from __future__ import annotations

import pytest

from injector.cache import Cache
from injector.errors import NotFoundError
from injector.redact import scrub
from injector.refs import Secret, parse_reference
from injector.sources import Fetched, Lease

REF = parse_reference("vault:secret/app")


def test_store_then_lookup() -> None:
    """A stored value is what a render's lookup gets."""
    cache = Cache(max_bytes=100)
    assert cache.store(REF, Fetched(value=Secret({"k": "v"}))) is None
    assert cache.lookup(REF).reveal() == {"k": "v"}


def test_an_over_limit_value_is_refused_and_not_kept() -> None:
    """A value over max_secret_bytes is the reference's error and never enters the cache."""
    cache = Cache(max_bytes=10)
    error = cache.store(REF, Fetched(value=Secret("x" * 11)))
    assert error is not None and "max_secret_bytes" in str(error) and "x" * 11 not in str(error)
    assert REF not in cache


def test_stored_values_are_scrubbed_from_logs() -> None:
    """Storing registers the value with the log scrubber before anything could print it."""
    Cache(max_bytes=100).store(REF, Fetched(value=Secret({"password": "cache-sentinel-7f3a"})))
    assert "cache-sentinel-7f3a" not in scrub("leaked cache-sentinel-7f3a here")


def test_a_permanent_failure_is_raised_by_lookup_until_forgiven() -> None:
    """lookup raises the recorded failure; forgive() makes the reference fetchable again."""
    cache = Cache(max_bytes=100)
    cache.fail(REF, NotFoundError("vault:secret/app: not found", ref=str(REF)))
    assert cache.settled(REF)
    with pytest.raises(NotFoundError):
        cache.lookup(REF)
    cache.forgive()
    assert not cache.settled(REF)
    with pytest.raises(KeyError):
        cache.lookup(REF)


def test_keep_only_drops_unused_references() -> None:
    """keep_only bounds the cache to what templates still use (no growth with history)."""
    cache = Cache(max_bytes=100)
    other = parse_reference("vault:secret/old")
    cache.store(REF, Fetched(value=Secret("a")))
    cache.store(other, Fetched(value=Secret("b")))
    cache.keep_only([REF])
    assert REF in cache and other not in cache and len(cache) == 1


def test_issued_lists_only_leased_or_expiring_values() -> None:
    """The handoff keeps issued values (a lease or an end of validity), not static ones."""
    cache = Cache(max_bytes=1000)
    db = parse_reference("vault:database/creds/app")
    cache.store(REF, Fetched(value=Secret("static")))
    lease = Lease(lease_id="l", duration=60, renewable=True, granted_at=0)
    cache.store(db, Fetched(value=Secret({"u": "p"}), lease=lease))
    assert set(cache.issued()) == {db}


def test_the_scrubber_holds_what_is_live_not_history() -> None:
    """Thousands of rotations leave the scrubber's registry bounded (the churn leak)."""
    from injector import redact

    cache = Cache(max_bytes=1000)
    before = len(redact._values)  # what other tests of this process left registered
    for i in range(5 * redact.RETIRED_KEPT):
        cache.store(REF, Fetched(value=Secret({"password": f"rotated-{i:06d}"})))
    assert len(redact._values) - before <= redact.RETIRED_KEPT + 1
    assert "rotated-" not in scrub(f"current rotated-{5 * redact.RETIRED_KEPT - 1:06d}")
