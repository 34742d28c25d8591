"""Value bounds at each backend's boundary: real moto and dev-Vault values too deep or too large."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import hvac
import pytest

from injector.errors import SourceError
from injector.refs import parse_reference
from injector.sources._limits import ValueLimits, json_depth

DEEP = "[" * 3000 + "]" * 3000  # ~6 KB; json.loads of it raises RecursionError


def fetch(source: Any, text: str) -> Any:
    ref = parse_reference(text)
    return source.fetch([ref])[ref]


class TestJsonDepth:
    @pytest.mark.parametrize(
        ("text", "depth"),
        [("{}", 1), ('{"a": [1, {"b": 2}]}', 3), ('"[[[["', 0), ('{"a": "]]]}}}", "b": [[1]]}', 3), ("[" * 5000, 5000)],
    )
    def test_counts_nesting_outside_strings(self, text: str, depth: int):
        """Brackets in string literals do not count; unclosed ones do."""
        assert json_depth(text) == depth

    def test_escaped_quotes_stay_inside_the_string(self):
        """An escaped quote does not end a string literal."""
        assert json_depth('["a\\"[[[[", 1]') == 1

    def test_json_text_inside_a_mapping_is_checked(self):
        """A string inside a mapping that looks like JSON is scanned too (it is parsed later)."""
        limits = ValueLimits(max_bytes=1 << 20, max_depth=64)
        with pytest.raises(SourceError, match=r"limits\.max_depth"):
            limits.check("vault:x", {"a": {"b": DEEP}}, ref="vault:x")


@pytest.mark.aws
class TestAws:
    def test_secrets_manager_deep_json_is_that_references_error(self, sm_source, sm_client):
        """A deeply nested SecretString from Secrets Manager is the reference's error, not a crash."""
        sm_client.create_secret(Name="deep", SecretString=DEEP)
        sm_client.create_secret(Name="fine", SecretString=json.dumps({"k": "v"}))
        deep, fine = parse_reference("aws-sm:deep"), parse_reference("aws-sm:fine")
        results = sm_source.fetch([deep, fine])
        assert isinstance(results[deep], SourceError) and "limits.max_depth" in str(results[deep])
        assert not results[deep].retryable
        assert not isinstance(results[fine], SourceError)

    def test_ssm_deep_json_is_that_references_error(self, ssm_source, ssm_client):
        """A deeply nested SSM parameter value (4 KB, the standard tier's maximum) is refused."""
        ssm_client.put_parameter(Name="/app/deep", Value="[" * 2000 + "]" * 2000, Type="String")
        result = fetch(ssm_source, "aws-ssm:/app/deep")
        assert isinstance(result, SourceError) and "limits.max_depth" in str(result)

    def test_ssm_by_path_deep_value_is_refused(self, ssm_source, ssm_client):
        """A by-path read with one deeply nested parameter is refused as a whole."""
        ssm_client.put_parameter(Name="/tree/a", Value="plain", Type="String")
        ssm_client.put_parameter(Name="/tree/b", Value="{" * 2000, Type="String")
        result = fetch(ssm_source, "aws-ssm:/tree/")
        assert isinstance(result, SourceError) and "limits.max_depth" in str(result)

    def test_max_depth_comes_from_the_config(self, aws_config, sm_client):
        """limits.max_depth in the config reaches the source."""
        from injector.sources.aws_secretsmanager import build_secretsmanager_source

        sm_client.create_secret(Name="three", SecretString=json.dumps({"a": {"b": {"c": 1}}}))
        source = build_secretsmanager_source(aws_config(limits={"max_depth": 2}))
        try:
            assert isinstance(fetch(source, "aws-sm:three"), SourceError)
        finally:
            source.close()


@pytest.mark.vault
class TestVault:
    def test_kv_string_holding_deep_json_is_that_references_error(
        self, vault_admin: hvac.Client, kv2_mount: str, make_vault_source: Callable[..., Any]
    ):
        """A KV field whose text is deeply nested JSON is refused before #KEY or the redactor parse it."""
        vault_admin.secrets.kv.v2.create_or_update_secret(path="deep", secret={"v": DEEP}, mount_point=kv2_mount)
        result = fetch(make_vault_source(), f"vault:{kv2_mount}/deep")
        assert isinstance(result, SourceError) and "limits.max_depth" in str(result)
        assert str(result).startswith(f"vault:{kv2_mount}/deep")

    def test_kv_data_nested_past_the_limit_is_refused(
        self, vault_admin: hvac.Client, kv2_mount: str, make_vault_source: Callable[..., Any]
    ):
        """KV data nested 100 levels deep is refused on the response text, before hvac parses it."""
        nested: Any = "leaf"
        for _ in range(100):
            nested = {"n": nested}
        vault_admin.secrets.kv.v2.create_or_update_secret(path="nested", secret=nested, mount_point=kv2_mount)
        result = fetch(make_vault_source(), f"vault:{kv2_mount}/nested")
        assert isinstance(result, SourceError) and "limits.max_depth" in str(result)


@pytest.mark.aws
def test_deep_aws_answer_envelope_is_that_references_error(aws_config, tmp_path):
    """An endpoint answering Secrets Manager with deeply nested JSON gives an error, not a RecursionError."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from injector.sources.aws_secretsmanager import build_secretsmanager_source

    body = b'{"SecretValues": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        config = aws_config(aws={"endpoint_url": f"http://127.0.0.1:{httpd.server_address[1]}", "max_attempts": 1})
        source = build_secretsmanager_source(config)
        try:
            result = fetch(source, "aws-sm:any")
        finally:
            source.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert isinstance(result, SourceError), result
