"""Vault auth methods and the token lifecycle (login, renewal, re-login, handoff, revocation)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from pathlib import Path

import hvac
import hvac.exceptions
import pytest

from injector.config.model import VaultAuthConfig
from injector.errors import AuthError, UnavailableError
from injector.sources.vault import VaultSource
from tests.fixtures.vault import (
    AuthSetup,
    VaultClock,
    VaultServer,
    dev_only,
    encode_jwt,
    rsa_key,
    service_account_claims,
)

pytestmark = pytest.mark.vault

MakeSource = Callable[..., VaultSource]


def approle_config(setup: AuthSetup) -> VaultAuthConfig:
    return VaultAuthConfig(
        method="approle",
        mount=setup.mount,
        role_id_file=setup.files["role_id"],
        secret_id_file=setup.files["secret_id"],
    )


def token_is_valid(admin: hvac.Client, token: str | None) -> bool:
    assert token is not None
    try:
        admin.auth.token.lookup(token)
    except hvac.exceptions.Forbidden:
        return False
    return True


def closed_port_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


class TestTokenMethod:
    def test_vault_token_root_never_renews(self, make_vault_source: MakeSource):
        """A root token from VAULT_TOKEN logs in via lookup-self; with TTL 0 it needs no maintenance."""
        source = make_vault_source()
        source.authenticator.login()
        assert source.authenticator.expires_at is None
        assert source.maintain() is None

    def test_token_file_is_reread(self, vault_admin: hvac.Client, tmp_path: Path, make_vault_source: MakeSource):
        """token_file is read at every login, so a rotated file is picked up by the next login."""
        first = vault_admin.auth.token.create(policies=["default"], ttl="1h")["auth"]["client_token"]
        second = vault_admin.auth.token.create(policies=["default"], ttl="1h")["auth"]["client_token"]
        token_file = tmp_path / "token"
        token_file.write_text(first + "\n")
        source = make_vault_source(VaultAuthConfig(method="token", token_file=token_file), environ={})
        source.authenticator.login()
        assert source.authenticator.token == first
        token_file.write_text(second)
        source.authenticator.login()
        assert source.authenticator.token == second

    def test_ttl_learned_from_lookup(
        self, vault_admin: hvac.Client, make_vault_source: MakeSource, vault_clock: VaultClock
    ):
        """A token's TTL comes from lookup-self; maintain() is due at about 2/3 of it."""
        token = vault_admin.auth.token.create(policies=["default"], ttl="300s")["auth"]["client_token"]
        source = make_vault_source(environ={"VAULT_TOKEN": token})
        source.authenticator.login()
        due = source.maintain()
        assert due is not None
        assert 0.55 * 300 <= due - vault_clock() <= 0.67 * 300

    def test_bad_token(self, make_vault_source: MakeSource):
        """A token Vault refuses is an AuthError naming VAULT_TOKEN, never the token."""
        source = make_vault_source(environ={"VAULT_TOKEN": "hvs.bogus-token-123"})
        with pytest.raises(AuthError, match="VAULT_TOKEN") as info:
            source.authenticator.login()
        assert "hvs.bogus-token-123" not in str(info.value)

    def test_no_token(self, make_vault_source: MakeSource):
        """Without VAULT_TOKEN or token_file, login is an AuthError saying what to set."""
        with pytest.raises(AuthError, match=r"set VAULT_TOKEN or vault\.auth\.token_file"):
            make_vault_source(environ={}).authenticator.login()

    def test_missing_token_file(self, tmp_path: Path, make_vault_source: MakeSource):
        """A token_file that does not exist is an AuthError naming the file."""
        missing = tmp_path / "nope" / "token"
        source = make_vault_source(VaultAuthConfig(method="token", token_file=missing), environ={})
        with pytest.raises(AuthError, match=str(missing)):
            source.authenticator.login()


class TestAppRole:
    def test_login(self, approle: Callable[..., AuthSetup], make_vault_source: MakeSource, vault_clock: VaultClock):
        """AppRole logs in with the role_id and secret_id files and learns the token TTL."""
        setup = approle(token_ttl="10m")
        source = make_vault_source(approle_config(setup))
        source.authenticator.login()
        assert source.authenticator.token
        assert source.authenticator.expires_at == pytest.approx(vault_clock() + 600, abs=5)
        assert f"role {setup.role}" in source.authenticator.describe()

    def test_bad_secret_id(self, approle: Callable[..., AuthSetup], make_vault_source: MakeSource):
        """A wrong secret_id is an AuthError naming approle, the mount and what to check."""
        setup = approle()
        setup.files["secret_id"].write_text("00000000-0000-0000-0000-000000000000")
        with pytest.raises(AuthError) as info:
            make_vault_source(approle_config(setup)).authenticator.login()
        message = str(info.value)
        assert f"approle login at auth/{setup.mount} failed" in message
        assert "invalid role or secret ID" in message
        assert "secret_id" in message
        assert "00000000-0000" not in message

    def test_missing_secret_id_file(
        self, approle: Callable[..., AuthSetup], tmp_path: Path, make_vault_source: MakeSource
    ):
        """A missing secret_id file is an AuthError naming the file."""
        setup = approle()
        setup.files["secret_id"] = tmp_path / "gone"
        with pytest.raises(AuthError, match=r"secret_id file .*gone does not exist"):
            make_vault_source(approle_config(setup)).authenticator.login()

    def test_unknown_auth_mount(self, approle: Callable[..., AuthSetup], make_vault_source: MakeSource):
        """A mount with no auth method behind it is an AuthError saying to enable it or fix the mount."""
        setup = approle()
        config = VaultAuthConfig(
            method="approle",
            mount="not-enabled-here",
            role_id_file=setup.files["role_id"],
            secret_id_file=setup.files["secret_id"],
        )
        with pytest.raises(AuthError, match="auth/not-enabled-here"):
            make_vault_source(config).authenticator.login()

    def test_unreachable_is_unavailable(self, approle: Callable[..., AuthSetup], make_vault_source: MakeSource):
        """A login that cannot reach Vault is a retryable UnavailableError, not an AuthError."""
        source = make_vault_source(approle_config(approle()), address=closed_port_address())
        with pytest.raises(UnavailableError, match="connection refused"):
            source.authenticator.login()


class TestKubernetes:
    @dev_only("a real Vault's kubernetes auth also calls the cluster's TokenReview API")
    def test_login(self, kubernetes_auth: Callable[..., AuthSetup], make_vault_source: MakeSource):
        """Kubernetes auth logs in with the service-account token file and the role."""
        setup = kubernetes_auth()
        config = VaultAuthConfig(
            method="kubernetes", role=setup.role, mount=setup.mount, token_path=setup.files["token"]
        )
        source = make_vault_source(config)
        source.authenticator.login()
        assert source.authenticator.token

    @dev_only("a real Vault's kubernetes auth also calls the cluster's TokenReview API")
    def test_token_file_reread_at_each_login(
        self, kubernetes_auth: Callable[..., AuthSetup], make_vault_source: MakeSource
    ):
        """The service-account token is read at every login: a rotated (or broken) file is seen at once."""
        setup = kubernetes_auth()
        config = VaultAuthConfig(
            method="kubernetes", role=setup.role, mount=setup.mount, token_path=setup.files["token"]
        )
        source = make_vault_source(config)
        source.authenticator.login()
        assert setup.key is not None
        setup.files["token"].write_text(encode_jwt(service_account_claims(), setup.key))
        source.authenticator.login()
        setup.files["token"].write_text(encode_jwt(service_account_claims(), rsa_key()))
        with pytest.raises(AuthError):
            source.authenticator.login()

    @dev_only("a real Vault's kubernetes auth also calls the cluster's TokenReview API")
    def test_wrong_service_account(self, kubernetes_auth: Callable[..., AuthSetup], make_vault_source: MakeSource):
        """A service account the role does not bind is an AuthError naming method, role, mount and hints."""
        setup = kubernetes_auth(service_account="someone-else")
        config = VaultAuthConfig(
            method="kubernetes", role=setup.role, mount=setup.mount, token_path=setup.files["token"]
        )
        with pytest.raises(AuthError) as info:
            make_vault_source(config).authenticator.login()
        message = str(info.value)
        assert f"kubernetes login as role {setup.role} at auth/{setup.mount} failed" in message
        assert "bound_service_account_names" in message
        assert str(setup.files["token"]) in message

    def test_missing_token_file(self, tmp_path: Path, make_vault_source: MakeSource):
        """A missing service-account token file is an AuthError naming the file."""
        config = VaultAuthConfig(method="kubernetes", role="app", token_path=tmp_path / "sa-token")
        with pytest.raises(AuthError, match=r"service-account token file .*sa-token does not exist"):
            make_vault_source(config).authenticator.login()


class TestJwt:
    def test_login(self, jwt_auth: Callable[..., AuthSetup], make_vault_source: MakeSource):
        """JWT auth logs in with the JWT file and the role."""
        setup = jwt_auth()
        config = VaultAuthConfig(method="jwt", role=setup.role, mount=setup.mount, jwt_file=setup.files["jwt"])
        source = make_vault_source(config)
        source.authenticator.login()
        assert source.authenticator.token

    def test_wrong_signature(self, jwt_auth: Callable[..., AuthSetup], make_vault_source: MakeSource):
        """A JWT signed by another key is an AuthError naming jwt, the role, the mount and the file."""
        setup = jwt_auth()
        forged = encode_jwt(setup.claims, rsa_key())
        setup.files["jwt"].write_text(forged)
        config = VaultAuthConfig(method="jwt", role=setup.role, mount=setup.mount, jwt_file=setup.files["jwt"])
        with pytest.raises(AuthError) as info:
            make_vault_source(config).authenticator.login()
        message = str(info.value)
        assert f"jwt login as role {setup.role} at auth/{setup.mount} failed" in message
        assert str(setup.files["jwt"]) in message
        assert forged not in message


class TestLifecycle:
    def test_renews_at_two_thirds(
        self, approle: Callable[..., AuthSetup], make_vault_source: MakeSource, vault_clock: VaultClock
    ):
        """maintain() does nothing before ~2/3 of the TTL and renews the same token after it."""
        source = make_vault_source(approle_config(approle(token_ttl="300s", token_max_ttl="1h")))
        auth = source.authenticator
        auth.login()
        token, generation = auth.token, auth.generation
        first_due = source.maintain()
        assert first_due is not None
        vault_clock.advance(0.5 * 300)
        assert source.maintain() == first_due
        vault_clock.advance(0.2 * 300)
        second_due = source.maintain()
        assert second_due is not None
        assert second_due > first_due
        assert (auth.token, auth.generation) == (token, generation)
        assert auth.expires_at == pytest.approx(vault_clock() + 300, abs=5)

    def test_relogin_after_failed_renewal(
        self,
        vault_admin: hvac.Client,
        approle: Callable[..., AuthSetup],
        make_vault_source: MakeSource,
        vault_clock: VaultClock,
    ):
        """When renewal fails (the token was revoked), maintain() logs in again."""
        source = make_vault_source(approle_config(approle(token_ttl="300s")))
        auth = source.authenticator
        auth.login()
        old = auth.token
        vault_admin.auth.token.revoke(old)
        vault_clock.advance(0.7 * 300)
        source.maintain()
        assert auth.token not in (None, old)
        assert token_is_valid(vault_admin, auth.token)

    @dev_only("moves the server clock with advance_clock")
    def test_relogin_near_max_ttl(
        self, approle: Callable[..., AuthSetup], make_vault_source: MakeSource, vault_clock: VaultClock
    ):
        """A renewal capped by the max TTL makes the next maintain() log in instead of renewing."""
        source = make_vault_source(approle_config(approle(token_ttl="60s", token_max_ttl="90s")))
        auth = source.authenticator
        auth.login()
        old = auth.token
        vault_clock.advance(45)
        source.maintain()  # renewal granted ~45 s of 60 asked
        assert auth.token == old
        assert auth.expires_at == pytest.approx(vault_clock() + 45, abs=3)
        vault_clock.advance(35)
        source.maintain()
        assert auth.token not in (None, old)

    def test_handoff_uses_one_token(
        self,
        vault_server: VaultServer,
        approle: Callable[..., AuthSetup],
        make_vault_source: MakeSource,
    ):
        """A sidecar restoring init's state adopts its token: one login, one token for both."""
        setup = approle()
        init = make_vault_source(approle_config(setup))
        init.authenticator.login()
        state = dict(init.save_state())
        assert set(state) == {"token", "accessor", "expires_at", "renewable", "auth"}
        assert state["auth"] == {"method": "approle", "mount": setup.mount, "role": None}
        logins_before = vault_server.dev.request_count(f"auth/{setup.mount}/login") if vault_server.dev else 0
        sidecar = make_vault_source(approle_config(setup))
        assert sidecar.restore_state(state) is True
        sidecar.fetch([])  # nothing to fetch, and no login either
        sidecar.authenticator.ensure()
        assert sidecar.authenticator.token == init.authenticator.token
        if vault_server.dev is not None:
            assert vault_server.dev.request_count(f"auth/{setup.mount}/login") == logins_before

    @dev_only("seals the server")
    def test_restore_while_sealed_adopts_on_trust(
        self,
        vault_server: VaultServer,
        approle: Callable[..., AuthSetup],
        make_vault_source: MakeSource,
    ):
        """A sidecar starting while Vault is sealed adopts init's token instead of failing or logging in."""
        setup = approle()
        init = make_vault_source(approle_config(setup))
        init.authenticator.login()
        state = init.save_state()
        sidecar = make_vault_source(approle_config(setup))
        vault_server.dev.seal()
        try:
            assert sidecar.restore_state(state) is True
        finally:
            vault_server.dev.unseal()
        logins = vault_server.dev.request_count(f"auth/{setup.mount}/login")
        sidecar.authenticator.ensure()
        assert sidecar.authenticator.token == init.authenticator.token
        assert vault_server.dev.request_count(f"auth/{setup.mount}/login") == logins

    def test_restore_refuses_other_auth_settings(
        self, approle: Callable[..., AuthSetup], make_vault_source: MakeSource
    ):
        """Saved state from other auth settings is not adopted."""
        init = make_vault_source(approle_config(approle()))
        init.authenticator.login()
        other = make_vault_source(approle_config(approle()))
        assert other.restore_state(init.save_state()) is False
        assert other.authenticator.token is None

    def test_restore_refuses_a_revoked_token(
        self, vault_admin: hvac.Client, approle: Callable[..., AuthSetup], make_vault_source: MakeSource
    ):
        """Saved state whose token Vault no longer accepts is not adopted."""
        setup = approle()
        init = make_vault_source(approle_config(setup))
        init.authenticator.login()
        state = init.save_state()
        vault_admin.auth.token.revoke(state["token"])
        assert make_vault_source(approle_config(setup)).restore_state(state) is False

    def test_revoke_session(
        self, vault_admin: hvac.Client, approle: Callable[..., AuthSetup], make_vault_source: MakeSource
    ):
        """revoke_session() revokes the token this process logged in for."""
        source = make_vault_source(approle_config(approle()))
        source.authenticator.login()
        token = source.authenticator.token
        source.revoke_session()
        assert not token_is_valid(vault_admin, token)
        assert source.authenticator.token is None

    def test_tokens_never_logged(
        self,
        approle: Callable[..., AuthSetup],
        make_vault_source: MakeSource,
        vault_clock: VaultClock,
        caplog: pytest.LogCaptureFixture,
    ):
        """Login, renewal, handoff and revocation log no token and no secret_id."""
        caplog.set_level(logging.DEBUG)
        setup = approle(token_ttl="300s")
        source = make_vault_source(approle_config(setup))
        source.authenticator.login()
        token = source.authenticator.token
        assert token
        assert token not in repr(source.authenticator._token)
        vault_clock.advance(250)
        source.maintain()
        state = source.save_state()
        make_vault_source(approle_config(setup)).restore_state(state)
        source.revoke_session()
        assert token not in caplog.text
        assert setup.files["secret_id"].read_text() not in caplog.text
