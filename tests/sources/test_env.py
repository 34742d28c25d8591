"""Tests of injector.sources.env: ``env:NAME`` reads the injector's environment, never its credentials."""

from __future__ import annotations

import pytest

from injector.credentials import CREDENTIAL_VARIABLES
from injector.errors import AccessDeniedError, NotFoundError
from injector.refs import parse_reference
from injector.sources import Fetched
from injector.sources.env import EnvSource
from tests.fixtures.sentinel import SENTINEL


def test_reads_a_variable() -> None:
    """env:NAME gives the variable's value."""
    ref = parse_reference("env:DB_HOST")
    result = EnvSource({"DB_HOST": "db.local"}).fetch([ref])[ref]
    assert isinstance(result, Fetched) and result.value.reveal() == "db.local"


def test_unset_variable_is_not_found() -> None:
    """An unset variable is NotFoundError naming it."""
    ref = parse_reference("env:DB_HOST")
    result = EnvSource({}).fetch([ref])[ref]
    assert isinstance(result, NotFoundError) and "DB_HOST is not set" in str(result)


@pytest.mark.parametrize("name", [n.replace("*", "CONFIG") for n in CREDENTIAL_VARIABLES])
def test_credentials_are_refused(name: str) -> None:
    """env: of one of the injector's own credentials is AccessDeniedError naming it, never its value."""
    ref = parse_reference(f"env:{name}")
    result = EnvSource({name: SENTINEL}).fetch([ref])[ref]
    assert isinstance(result, AccessDeniedError)
    assert f"{name} holds the injector's own credentials" in str(result) and SENTINEL not in str(result)
