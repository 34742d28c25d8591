"""References: the whole grammar of DESIGN.md §4, and the masked Secret type."""

from __future__ import annotations

import pickle

import pytest

from injector.errors import ConfigError, NotFoundError
from injector.refs import Reference, Secret, parse_reference
from tests.fixtures.sentinel import SENTINEL


class TestParseReference:
    @pytest.mark.parametrize(
        ("text", "scheme", "path", "key", "params"),
        [
            ("vault:secret/app", "vault", "secret/app", None, ()),
            ("vault:secret/app#password", "vault", "secret/app", "password", ()),
            ("vault:secret/app#password?version=3", "vault", "secret/app", "password", (("version", "3"),)),
            ("vault:secret/app?version=3#password", "vault", "secret/app", "password", (("version", "3"),)),
            ("vault:database/creds/app", "vault", "database/creds/app", None, ()),
            (
                "vault:pki/issue/web?common_name=web.local&ttl=1h",
                "vault",
                "pki/issue/web",
                None,
                (("common_name", "web.local"), ("ttl", "1h")),
            ),
            ("aws-sm:prod/db#password", "aws-sm", "prod/db", "password", ()),
            ("aws-sm:prod/db?stage=AWSPREVIOUS", "aws-sm", "prod/db", None, (("stage", "AWSPREVIOUS"),)),
            ("aws-sm:prod/db?version_id=abc-123", "aws-sm", "prod/db", None, (("version_id", "abc-123"),)),
            ("aws-ssm:/app/prod/db_host", "aws-ssm", "/app/prod/db_host", None, ()),
            ("aws-ssm:plain_name", "aws-ssm", "plain_name", None, ()),
            ("aws-ssm:/app/prod/", "aws-ssm", "/app/prod/", None, ()),
            ("file:/etc/app/config.json#port", "file", "/etc/app/config.json", "port", ()),
            ("file:relative.yaml", "file", "relative.yaml", None, ()),
            ("env:DB_PASSWORD", "env", "DB_PASSWORD", None, ()),
            (
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf#password",
                "aws-sm",
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf",
                "password",
                (),
            ),
            (
                "arn:aws:ssm:eu-west-1:123456789012:parameter/app/prod/db_host",
                "aws-ssm",
                "arn:aws:ssm:eu-west-1:123456789012:parameter/app/prod/db_host",
                None,
                (),
            ),
            ("vault:secret/app?refresh=30s", "vault", "secret/app", None, (("refresh", "30s"),)),
        ],
        ids=lambda v: v if isinstance(v, str) else None,
    )
    def test_parses(
        self, text: str, scheme: str, path: str, key: str | None, params: tuple[tuple[str, str], ...]
    ) -> None:
        """Each documented form parses into its scheme, path, key and parameters."""
        ref = parse_reference(text)
        assert (ref.scheme, ref.path, ref.key, ref.params) == (scheme, path, key, params)
        assert str(ref) == text

    @pytest.mark.parametrize(
        ("text", "fragment"),
        [
            ("", "expected a reference"),
            ("secret/app", "no scheme"),
            ("consul:kv/app", "unknown scheme 'consul'"),
            ("vault:", "empty path"),
            ("vault:/secret/app", "not a Vault path"),
            ("vault:secret//app", "not a Vault path"),
            ("vault:secret/../sys", "'..' is not allowed"),
            ("vault:secret/app#", "empty #KEY"),
            ("vault:secret/app?version=2#pass?word", "cannot contain '?'"),
            ("vault:0?#0?version=", "cannot contain '?'"),
            ("vault:0#\r?", "whitespace at the start or end"),
            ("vault:secret/app ?refresh=1s", "whitespace at the start or end"),
            ("vault:secret/app?version=x", "whole number"),
            ("vault:secret/app?verison=2", "unknown parameter 'verison'"),
            ("vault:secret/app?version=1&version=2", "given twice"),
            ("aws-sm:prod/db?stage=A&version_id=B", "either stage or version_id"),
            ("aws-sm:prod db", "not a secret name"),
            ("aws-ssm:app/prod/", "starts and ends with /"),
            ("aws-ssm:/app/prod/#key", "takes no #KEY"),
            ("env:1BAD", "not an environment variable name"),
            ("env:HOME#x", "take no #KEY"),
            ("arn:aws:s3:::bucket", "not a Secrets Manager or SSM parameter ARN"),
            ("vault:secret/app?refresh=soon", "refresh"),
        ],
        ids=lambda v: v if isinstance(v, str) else None,
    )
    def test_malformed_reference_is_quoted_with_what_is_expected(self, text: str, fragment: str) -> None:
        """A malformed reference is a ConfigError quoting it and saying what is expected."""
        with pytest.raises(ConfigError) as info:
            parse_reference(text, where="secrets.db")
        message = str(info.value)
        assert message.startswith("secrets.db: ")
        assert fragment in message
        if text:
            assert repr(text) in message
            assert "expected" in message

    def test_base_drops_key_and_refresh(self) -> None:
        """Two keys of one secret share a base reference, so it is fetched once."""
        a = parse_reference("vault:secret/app#user?refresh=1m")
        b = parse_reference("vault:secret/app#password")
        assert a.base == b.base == parse_reference("vault:secret/app")
        assert a.refresh == 60.0
        assert b.refresh is None

    def test_base_keeps_request_params(self) -> None:
        """PKI requests with different parameters are different fetches."""
        a = parse_reference("vault:pki/issue/web?common_name=a.local")
        b = parse_reference("vault:pki/issue/web?common_name=b.local")
        assert a.base != b.base

    def test_equality_ignores_the_written_text(self) -> None:
        """Parameter order and key/query order do not make two references different."""
        a = parse_reference("vault:pki/issue/web?ttl=1h&common_name=a")
        b = parse_reference("vault:pki/issue/web?common_name=a&ttl=1h")
        assert a == b
        assert hash(a) == hash(b)

    def test_by_path(self) -> None:
        """Only an aws-ssm path ending in / is a by-path reference."""
        assert parse_reference("aws-ssm:/app/").by_path
        assert not parse_reference("aws-ssm:/app/x").by_path
        assert not Reference(scheme="vault", path="a/").by_path


class TestSecret:
    def test_repr_and_str_are_masked(self) -> None:
        """No ordinary way of printing a Secret shows the value."""
        secret = Secret(SENTINEL)
        for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", "%s" % secret, str([secret])):  # noqa: UP031
            assert SENTINEL not in text

    def test_mapping_secret_is_masked(self) -> None:
        """A mapping value is masked as a whole."""
        assert SENTINEL not in repr(Secret({"password": SENTINEL}))

    def test_not_picklable(self) -> None:
        """Pickling would carry the value out in clear text, so it is refused."""
        with pytest.raises(TypeError):
            pickle.dumps(Secret(SENTINEL))

    def test_select_from_mapping_and_json(self) -> None:
        """#KEY selects from a mapping and from a JSON-object string alike."""
        assert Secret({"a": "1"}).select("a", ref="r").reveal() == "1"
        assert Secret('{"a": "1", "n": 5}').select("n", ref="r").reveal() == "5"

    def test_missing_key_lists_keys_not_values(self) -> None:
        """A missing key names the reference and the keys that exist, never a value."""
        with pytest.raises(NotFoundError) as info:
            Secret({"password": SENTINEL, "user": "app"}).select("pasword", ref="vault:secret/app#pasword")
        message = str(info.value)
        assert message == "vault:secret/app#pasword: key 'pasword' not found (keys: password, user)"
        assert SENTINEL not in message

    def test_a_key_name_with_a_newline_cannot_forge_a_line(self) -> None:
        """Key names listed in a missing-key error have their control characters escaped."""
        with pytest.raises(NotFoundError) as info:
            Secret({"a\ninjector: error: forged": "v"}).select("b", ref="vault:secret/app#b")
        assert "\n" not in str(info.value) and "a\\ninjector" in str(info.value)

    def test_select_on_plain_string_says_drop_the_key(self) -> None:
        """Selecting a key of a non-JSON string explains the fix."""
        with pytest.raises(NotFoundError, match="drop the #KEY"):
            Secret(SENTINEL).select("x", ref="aws-sm:plain#x")

    def test_equality_compares_values(self) -> None:
        """Two fetches of the same value compare equal (the cache's change check)."""
        assert Secret({"a": "1"}) == Secret({"a": "1"})
        assert Secret("a") != Secret("b")
