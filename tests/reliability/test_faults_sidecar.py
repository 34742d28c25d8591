"""`injector sidecar` through a backend fault: it keeps the last good files, backs off, turns unready
after ``max_stale``, and recovers by itself when the backend returns.

Each fault is one scenario run by a real sidecar process against its own backend (a fresh dev
Vault, or a loopback endpoint with canned AWS answers): start, wait for /readyz, break the backend
for ``WINDOW`` seconds while sampling the files, /readyz and every request that reaches the backend,
heal it and change the value, wait for the new value and /readyz 200. The scenarios run side by
side (each has its own backend, so counts do not mix) once per module; each test below checks one
behaviour of every scenario's record.

The request bound, from the backoff math (docs/reliability.md has the measured numbers): a failed
reference is retried after a delay drawn with full jitter from ``[min_backoff, c]``, where ``c``
is ``refresh.min_backoff`` (200ms) doubling per failure to ``max_backoff`` (2s) — full jitter so
that a fleet that failed together (an outage) comes back spread over the whole window, and the
``min_backoff`` floor so that no retry comes at ~0 s. At worst every delay is the floor: at most
1 + 6/0.2 = 31 attempts in a 6 s window, each one request (three for the revoked token: the read,
lookup-self, and the login that re-reads the token file); on average about 8. A retry storm sends
one request per round trip — thousands in 6 s on loopback.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.sidecar import wait_for
from tests.fixtures.tmpfs import mount_tmpfs, unmount
from tests.reliability.support import (
    CannedAws,
    CountingVault,
    data_link,
    distinct_ports,
    start_sidecar,
    visible_files,
    write_config,
)

pytestmark = pytest.mark.slow

WINDOW = 6.0
MIN_BACKOFF, MAX_BACKOFF = 0.2, 2.0
MAX_STALE = 2.0
INTERVAL = 0.5
REFRESH = {
    "interval": f"{INTERVAL}s",
    "jitter": 0.0,
    "min_backoff": f"{MIN_BACKOFF}s",
    "max_backoff": f"{MAX_BACKOFF}s",
    "max_stale": f"{MAX_STALE}s",
    "wait": {"min": "50ms", "max": "500ms"},
}
#: Attempts that fit in WINDOW when every full-jitter delay is the min_backoff floor (module docstring).
MAX_ATTEMPTS = 1 + int(WINDOW / MIN_BACKOFF)
_RETRY_IN = re.compile(r"keeping the last good value, retry in (\d+(?:\.\d+)?)(ms|s)\b")


@dataclass
class Record:
    """What one scenario saw. Times are seconds since the fault began."""

    kind: str
    ref: str
    requests_per_attempt: int
    counted: bool = True
    before: dict[str, bytes] = field(default_factory=dict)
    link_before: str | None = None
    expected_after: dict[str, bytes] = field(default_factory=dict)
    #: Samples of the files that differed from ``before`` during the fault (should stay empty).
    changed: list[str] = field(default_factory=list)
    samples: int = 0
    ready: list[tuple[float, int, str]] = field(default_factory=list)
    #: Arrival times of the backend requests during the window.
    requests: list[float] = field(default_factory=list)
    alive_through_window: bool = False
    recovered_in: float | None = None
    log: str = ""
    exit_code: int | None = None
    error: BaseException | None = None

    def delays(self) -> list[float]:
        """The retry delays the sidecar logged ("… retry in 177ms"), in seconds, in order."""
        return [float(n) / (1000 if unit == "ms" else 1) for n, unit in _RETRY_IN.findall(self.log)]

    def attempts(self) -> list[float]:
        """The start times of attempts: a request less than 50 ms after the previous one belongs to
        the same attempt (an attempt of several requests may span more than 50 ms in all)."""
        out: list[float] = []
        last = None
        for t in self.requests:
            if last is None or t - last > 0.05:
                out.append(t)
            last = t
        return out


class Scenario:
    """A backend (running once built) with one fault: ``break_`` it, ``heal`` it with a new value."""

    kind = ""
    ref = ""
    requests_per_attempt = 1
    #: False when the fault keeps requests from reaching anything that could count them.
    counted = True
    env: dict[str, str]

    def config(self, output_dir: Path, tmp: Path) -> dict[str, Any]:
        raise NotImplementedError

    def break_(self) -> None:
        raise NotImplementedError

    def heal(self) -> None:
        raise NotImplementedError

    def times(self) -> list[float]:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


def templates(ref: str) -> list[dict[str, str]]:
    return [
        {"contents": "{{ secret('" + ref + "#password') }}\n", "destination": "password"},
        {"contents": "{{ secret('" + ref + "#user') }}\n", "destination": "user"},
    ]


class VaultScenario(Scenario):
    ref = "vault:secret/app"

    def __init__(self, kind: str, fault: Callable[[Any], None], timeout: str = "10s") -> None:
        self.kind = kind
        self._fault = fault
        self._timeout = timeout
        self.vault = CountingVault()
        self.vault.client().secrets.kv.v2.create_or_update_secret(path="app", secret={"password": "v1", "user": "u1"})
        self.env = {"VAULT_TOKEN": "root"}

    def vault_section(self, tmp: Path) -> dict[str, Any]:
        return {"address": self.vault.address, "timeout": self._timeout, "auth": {"method": "token"}}

    def config(self, output_dir: Path, tmp: Path) -> dict[str, Any]:
        return {
            "output_dir": str(output_dir),
            "vault": self.vault_section(tmp),
            "refresh": REFRESH,
            "templates": templates(self.ref),
        }

    def break_(self) -> None:
        self._fault(self.vault.dev)

    def heal(self) -> None:
        self.vault.heal()
        self.vault.client().secrets.kv.v2.create_or_update_secret(path="app", secret={"password": "v2", "user": "u2"})

    def times(self) -> list[float]:
        return self.vault.times()

    def stop(self) -> None:
        self.vault.stop()


class RevokedTokenScenario(VaultScenario):
    """The token in vault.auth.token_file is revoked through the API; healing writes a new one."""

    requests_per_attempt = 3

    def __init__(self) -> None:
        super().__init__("token-revoked", lambda dev: None)
        self.env = {}
        self._token = self._new_token()
        self._file: Path | None = None

    def _new_token(self) -> str:
        return str(self.vault.client().auth.token.create(policies=["root"], ttl="1h")["auth"]["client_token"])

    def vault_section(self, tmp: Path) -> dict[str, Any]:
        self._file = tmp / "vault-token"
        self._file.write_text(self._token)
        return {"address": self.vault.address, "auth": {"method": "token", "token_file": str(self._file)}}

    def break_(self) -> None:
        self.vault.client().auth.token.revoke(self._token)

    def heal(self) -> None:
        assert self._file is not None
        self._file.write_text(self._new_token())
        super().heal()


class ExpiredAwsScenario(Scenario):
    """AWS answers ExpiredTokenException (moto cannot expire credentials) until healed."""

    kind = "aws-expired"
    ref = "aws-sm:app/db"
    counted = True

    def __init__(self) -> None:
        self.aws = CannedAws()
        self.aws.secret("app/db", {"password": "v1", "user": "u1"}, "v1")
        self.env = {}

    def config(self, output_dir: Path, tmp: Path) -> dict[str, Any]:
        return {
            "output_dir": str(output_dir),
            "aws": {"region": "us-east-1", "endpoint_url": self.aws.url, "max_attempts": 1, "timeout": "2s"},
            "refresh": REFRESH,
            "templates": templates(self.ref),
        }

    def break_(self) -> None:
        self.aws.error(400, "ExpiredTokenException", "The security token included in the request is expired")

    def heal(self) -> None:
        self.aws.secret("app/db", {"password": "v2", "user": "u2"}, "v2")

    def times(self) -> list[float]:
        return self.aws.times()

    def stop(self) -> None:
        self.aws.stop()


class UnreachableAwsScenario(ExpiredAwsScenario):
    """The AWS endpoint's port is closed (connection refused) until healed: nothing can count
    refused connections, so the sidecar's own log of failed attempts is counted instead."""

    kind = "aws-unreachable"
    counted = False

    def break_(self) -> None:
        self.aws.close_port()

    def heal(self) -> None:
        self.aws.reopen_port()
        super().heal()


def scenarios() -> list[Callable[[], Scenario]]:
    return [
        lambda: VaultScenario("unreachable", lambda dev: dev.set_outage(True)),
        lambda: VaultScenario("slow", lambda dev: dev.set_latency(1.5), timeout="500ms"),
        lambda: VaultScenario("5xx-storm", lambda dev: dev.set_error_rate(1.0, 500)),
        lambda: VaultScenario("429-storm", lambda dev: dev.set_error_rate(1.0, 429)),
        lambda: VaultScenario("sealed", lambda dev: dev.seal()),
        RevokedTokenScenario,
        ExpiredAwsScenario,
        UnreachableAwsScenario,
    ]


KINDS = ["unreachable", "slow", "5xx-storm", "429-storm", "sealed", "token-revoked", "aws-expired", "aws-unreachable"]


def play(scenario: Scenario, tmp: Path, port: int) -> Record:
    """Runs one scenario end to end and returns its record (errors included, never raised)."""
    record = Record(
        kind=scenario.kind,
        ref=scenario.ref,
        requests_per_attempt=scenario.requests_per_attempt,
        counted=scenario.counted,
    )
    out = tmp / "tmpfs"
    mount_tmpfs(out, size="1m")
    sidecar = None
    try:
        config = write_config(tmp / "injector.yaml", scenario.config(out, tmp))
        sidecar = start_sidecar(tmp, config, port, env=scenario.env)
        _play(scenario, record, sidecar, out)
    except BaseException as exc:  # pytest.fail raises an OutcomeException: keep it for the tests
        record.error = exc
    finally:
        if sidecar is not None:
            record.exit_code = sidecar.stop()
            record.log = sidecar.logs()
        scenario.stop()
        unmount(out)
    return record


def _play(scenario: Scenario, record: Record, sidecar: Any, out: Path) -> None:
    sidecar.wait_ready()
    record.before = visible_files(out)
    record.link_before = data_link(out)
    record.expected_after = {name: data.replace(b"1", b"2") for name, data in record.before.items()}
    started = time.monotonic()
    scenario.break_()
    while (now := time.monotonic()) < started + WINDOW:
        files, link = visible_files(out), data_link(out)
        if files != record.before or link != record.link_before:
            record.changed.append(f"{now - started:.2f}s: {sorted(files)} via {link}")
        status, body = sidecar.get("/readyz")
        record.ready.append((time.monotonic() - started, status, body.strip()))
        record.samples += 1
        time.sleep(0.05)  # the sampling period of a bounded observation window
    record.alive_through_window = sidecar.proc.poll() is None
    record.requests = [t - started for t in scenario.times() if started <= t <= started + WINDOW]
    healed = time.monotonic()
    scenario.heal()

    def recovered() -> bool:
        return visible_files(out) == record.expected_after and sidecar.get("/readyz")[0] == 200

    wait_for(recovered, 15, f"{scenario.kind}: the new value and /readyz 200")
    record.recovered_in = time.monotonic() - healed


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory, aws_env: None) -> dict[str, Record]:
    """Every scenario's record, played side by side once for the module."""
    if os.geteuid() != 0:
        pytest.skip("mounting tmpfs needs root (run the suite as root, as CI does)")
    # Backends first, one after the other, then the sidecars' ports: nothing races for a port.
    by_kind = {kind: make() for kind, make in zip(KINDS, scenarios(), strict=True)}
    ports = distinct_ports(len(by_kind))
    with ThreadPoolExecutor(max_workers=len(by_kind)) as pool:
        futures = {
            kind: pool.submit(play, scenario, tmp_path_factory.mktemp(kind), port)
            for (kind, scenario), port in zip(by_kind.items(), ports, strict=True)
        }
        played = {kind: future.result() for kind, future in futures.items()}
    print(summary(played))  # the measured numbers of docs/reliability.md (pytest -s shows them)
    return played


@pytest.fixture
def record(records: dict[str, Record], kind: str) -> Record:
    rec = records[kind]
    if rec.error is not None:
        raise AssertionError(f"{kind}: the scenario failed: {rec.error}\n{rec.log}") from rec.error
    return rec


@pytest.mark.parametrize("kind", KINDS)
class TestThroughAFault:
    def test_last_good_files_stay_byte_identical(self, record: Record) -> None:
        """Every sample during the fault shows the same bytes through the same ..data snapshot."""
        assert record.before == {"password": b"v1\n", "user": b"u1\n"}
        assert record.samples > 50
        assert record.changed == []

    def test_keeps_running_and_logs_the_failure(self, record: Record) -> None:
        """The sidecar neither exits nor stops its loop; the log names the reference that failed."""
        assert record.alive_through_window
        assert f"refreshing {record.ref} failed" in record.log
        assert "keeping the last good value" in record.log
        assert record.exit_code == 0

    def test_backend_requests_stay_under_the_backoff_bound(self, record: Record) -> None:
        """Requests reaching the backend in the window stay under the bound of the module docstring.

        A refused connection reaches nothing that could count it: for aws-unreachable the sidecar's
        logged failed attempts are counted instead (the window and the moment before the heal: +1).
        """
        if record.counted:
            seen, bound = len(record.requests), MAX_ATTEMPTS * record.requests_per_attempt + 1
        else:
            seen, bound = len(record.delays()), MAX_ATTEMPTS + 2
        assert 2 <= seen <= bound, f"{seen} requests in {WINDOW}s (bound {bound}): {record.requests}"

    def test_retry_delays_double_with_full_jitter(self, record: Record) -> None:
        """Each retry delay the sidecar chose lies in [min_backoff, c], c = min_backoff doubling per
        failure up to max_backoff."""
        delays = record.delays()
        assert len(delays) >= 3, record.log
        for k, delay in enumerate(delays):
            ceiling = min(MAX_BACKOFF, MIN_BACKOFF * 2**k)
            assert MIN_BACKOFF - 0.001 <= delay <= ceiling + 0.001, (
                f"retry {k + 1}: {delay}s, not in [{MIN_BACKOFF}, {ceiling}]"
            )

    def test_becomes_unready_after_max_stale_with_the_reason(self, record: Record) -> None:
        """/readyz stays 200 until max_stale has passed, then 503 naming the stale reference, and stays so."""
        first = next((i for i, (_, status, _) in enumerate(record.ready) if status != 200), None)
        assert first is not None, "never unready"
        at, status, body = record.ready[first]
        assert status == 503
        assert MAX_STALE - INTERVAL - 0.1 <= at <= MAX_STALE + 2.0, f"unready at {at:.2f}s"
        assert body.startswith(f"stale: {record.ref} last refreshed"), body
        assert all(status == 503 for _, status, _ in record.ready[first:]), "flapped back to ready while failing"

    def test_recovers_by_itself(self, record: Record) -> None:
        """Once the backend is back the new value is written and /readyz is 200 again, unaided."""
        assert record.recovered_in is not None
        assert record.recovered_in <= 2.0 + INTERVAL + 1.0, f"recovered in {record.recovered_in:.2f}s"


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind != "aws-unreachable"])
def test_attempts_never_reach_the_backend_closer_than_half_min_backoff(record: Record) -> None:
    """At the backend, consecutive attempts are at least min_backoff/2 apart: no immediate retries."""
    attempts = record.attempts()
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(gaps) >= 2, attempts
    assert min(gaps) >= MIN_BACKOFF / 2 - 0.01, gaps


def test_retry_delays_are_jittered(records: dict[str, Record]) -> None:
    """Two sidecars failing the same way do not retry in lockstep: their chosen delays differ (jitter)."""
    first, second = records["5xx-storm"].delays(), records["429-storm"].delays()
    assert max(abs(a - b) for a, b in zip(first, second, strict=False)) > 0.005, (first, second)


def summary(records: dict[str, Record]) -> str:
    """One line per scenario (for docs/reliability.md): requests, unready time, recovery time."""
    lines = []
    for kind, rec in records.items():
        first = next((t for t, status, _ in rec.ready if status != 200), None)
        seen = len(rec.requests) if rec.counted else len(rec.delays())
        lines.append(
            f"{kind}: {seen} {'requests' if rec.counted else 'logged attempts'} in {WINDOW:g}s, delays "
            f"{[round(d, 2) for d in rec.delays()]}, unready at {first}, recovered in {rec.recovered_in}"
        )
    return "\n".join(lines)
