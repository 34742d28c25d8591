"""Fleet: what one Vault sees when a rollout starts N sidecars together, with ``refresh.splay`` off and on.

How: one ``devvault.DevVault`` in this process on 127.0.0.1; its ``_serve`` is wrapped here (the
dev server itself is unchanged) to record the monotonic arrival time and path of every request,
the ones an outage drops included. For each mode (``refresh.splay: false``, then the default
``true``), N real ``injector sidecar`` processes are started one after another (a few seconds on
this machine), each with 5 KV v2 paths of its own (``secret/fleet/podNN/kJ``, so the server log
says which pod asked) in one template, ``refresh.interval: 5s`` and the other refresh defaults
(jitter 0.1, min_backoff 1 s, max_backoff 60 s).

The start: on this 2-core machine N interpreters need ~10–20 s of CPU to start, and N first
renders at once take seconds more; that alone would spread the pods' first fetches over several
intervals, which a rollout onto N nodes (a core each) does not do. So the wrapper holds every KV
read until each pod has asked for all 5 of its paths, then answers them all at once
(``vault.timeout: 120s``, so nobody gives up while held). From then on each pod runs on its own.
The release is t0.

Measured, per mode:

- steady: requests per second from t0 + 1 interval for ``--steady`` seconds (the second interval
  on): mean, busiest 1-s bin, busiest / mean, and the mean the ideal predicts (N × 5 paths / the
  mean cycle of 0.95 interval);
- ``--stall S`` (off by default): then every KV read is held S seconds (Vault slow, not down) and
  the 15 s from 1 s after the release are binned the same way;
- outage: ``set_outage(True)`` for ``--outage`` seconds (connections closed unanswered: the
  retries are counted as they arrive), then off; the first 10 s after recovery: busiest 1-s bin /
  the steady mean of the same mode, and how many of the N × 5 paths were asked for again within
  10 s and within 25 s.

At the end every sidecar gets SIGTERM, then SIGKILL after 10 s. The run takes about 3.5 minutes
at N = 80 on an idle machine. It prints the markdown rows for bench/README.md ("Fleet").

``--aws-throttling`` measures something else, in this process only: botocore's standard against
its adaptive retry mode, through real ``SsmSource`` objects, against ``ThrottlingSsm`` (below).

    .venv/bin/python bench/fleet.py                   # N = 80, splay off then on
    .venv/bin/python bench/fleet.py --quick           # N = 10, short phases: to work on the bench
    .venv/bin/python bench/fleet.py --splay on --stall 3 --pods 60
    .venv/bin/python bench/fleet.py --aws-throttling
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml
from common import AWS_ENV, INJECTOR, child_env, loadavg, machine, wait_for
from procs import exit_on_sigterm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for tests.fixtures
from devvault import DevVault
from tests.fixtures.aws import serve_aws_json

PATHS = 5
INTERVAL = 5.0
RECOVERY_WINDOW = 10.0
RECOVERY_LIMIT = 25.0
KV_PREFIX = "/v1/secret/data/fleet/"
STALL_WATCH = 15.0


class CountingVault:
    """A DevVault whose every request is logged (arrival time, path) and can be held at a gate."""

    def __init__(self) -> None:
        self.vault = DevVault().start()
        self.log: list[tuple[float, str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self._lock = threading.Lock()
        #: KV reads waiting at the gate.
        self.held = 0
        serve = self.vault._serve

        def counted(method: str, target: str, headers: dict[str, str], body: bytes) -> Any:
            path = target.split("?", 1)[0]
            self.log.append((time.monotonic(), path))
            if not self.gate.is_set() and path.startswith(KV_PREFIX):
                with self._lock:
                    self.held += 1
                self.gate.wait()
            return serve(method, target, headers, body)

        self.vault._serve = counted  # type: ignore[method-assign]

    def hold(self) -> None:
        """From now on, KV reads wait until ``gate.set()``."""
        with self._lock:
            self.held = 0
        self.gate.clear()

    def between(self, start: float, end: float) -> list[tuple[float, str]]:
        return [(t, p) for t, p in list(self.log) if start <= t < end]


def paths_back(log: list[tuple[float, str]], up: float) -> dict[str, float]:
    """KV path → seconds after ``up`` of its first request after ``up`` (answered: the outage is over)."""
    back: dict[str, float] = {}
    for t, path in log:
        if path.startswith(KV_PREFIX) and path not in back:
            back[path] = t - up
    return back


def per_second(times: list[float], start: float, seconds: int) -> list[int]:
    bins = [0] * seconds
    for t in times:
        i = int(t - start)
        if 0 <= i < seconds:
            bins[i] += 1
    return bins


@dataclass
class ModeResult:
    splay: bool
    pods: int
    spawn_span: float
    start_span: float
    steady_bins: list[int]
    outage_requests: int
    recovery_bins: list[int]
    #: KV paths (of pods × 5) asked for again within RECOVERY_WINDOW and within RECOVERY_LIMIT of the recovery.
    back_early: int
    back: int
    #: Requests per second from 1 s after a stall (``--stall``) ended, for STALL_WATCH seconds.
    stall_bins: list[int]

    @property
    def steady_mean(self) -> float:
        return sum(self.steady_bins) / len(self.steady_bins)

    @property
    def ideal_mean(self) -> float:
        return self.pods * PATHS / (INTERVAL * 0.95)


def write_config(folder: Path, address: str, pod: int, splay: bool, min_backoff: str | None) -> Path:
    folder.mkdir(parents=True)
    (folder / "out").mkdir()
    lines = "".join(f'K{j}={{{{ secret("vault:secret/fleet/pod{pod:02d}/k{j}#v") }}}}\n' for j in range(PATHS))
    raw = {
        "output_dir": str(folder / "out"),
        "allow_non_tmpfs": True,
        "vault": {"address": address, "timeout": "120s", "auth": {"method": "token"}},
        "templates": [{"contents": lines, "destination": "app.env"}],
        "refresh": {
            "interval": f"{INTERVAL:g}s",
            "splay": splay,
            **({"min_backoff": min_backoff} if min_backoff else {}),
        },
        "health": {"address": False},
    }
    path = folder / "injector.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def seed(vault: DevVault, pods: int) -> None:
    import hvac

    client = hvac.Client(url=vault.address, token=vault.root_token, timeout=10)
    for pod in range(pods):
        for j in range(PATHS):
            client.secrets.kv.v2.create_or_update_secret(
                path=f"fleet/pod{pod:02d}/k{j}", secret={"v": f"value-{pod}-{j}"}, mount_point="secret"
            )


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to every sidecar still running, SIGKILL to those alive 10 s later."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def run_mode(
    cv: CountingVault,
    work: Path,
    *,
    pods: int,
    splay: bool,
    steady: float,
    outage: float,
    min_backoff: str | None = None,
    stall: float = 0.0,
) -> ModeResult:
    cv.log.clear()
    cv.hold()
    configs = [write_config(work / f"pod{pod:02d}", cv.vault.address, pod, splay, min_backoff) for pod in range(pods)]
    env = child_env({"VAULT_TOKEN": cv.vault.root_token})
    procs: list[subprocess.Popen[bytes]] = []
    try:
        spawn = time.monotonic()
        for pod, config in enumerate(configs):
            with (work / f"pod{pod:02d}" / "sidecar.log").open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        [INJECTOR, "sidecar", "--config", str(config)], stdout=out, stderr=subprocess.STDOUT, env=env
                    )
                )
        spawn_span = time.monotonic() - spawn
        print(f"  {time.strftime('%H:%M:%S')} spawned")
        wait_for(lambda: cv.held >= pods * PATHS, 120, f"{pods} sidecars to ask for their paths", step=0.05)
        t0 = time.monotonic()
        cv.gate.set()
        outputs = [work / f"pod{pod:02d}" / "out" / "app.env" for pod in range(pods)]
        wait_for(lambda: all(o.exists() for o in outputs), 60, "every first render", step=0.05)
        start_span = max(o.stat().st_mtime for o in outputs) - min(o.stat().st_mtime for o in outputs)
        print(
            f"  splay={splay}: {pods} spawned in {spawn_span:.2f} s; released; first renders within {start_span:.2f} s"
        )

        steady_start = t0 + INTERVAL
        time.sleep(max(0.0, steady_start + steady - time.monotonic()))
        steady_bins = per_second(
            [t for t, _ in cv.between(steady_start, steady_start + steady)], steady_start, int(steady)
        )
        print(f"  steady: {steady_bins}")

        stall_bins: list[int] = []
        if stall:
            # Vault stalls: requests wait (answered late, not failed), as in a slow leader change.
            cv.hold()
            time.sleep(stall)
            released = time.monotonic()
            cv.gate.set()
            start = released + 1  # the held requests themselves are one burst; what follows is the question
            time.sleep(max(0.0, start + STALL_WATCH - time.monotonic()))
            stall_bins = per_second([t for t, _ in cv.between(start, start + STALL_WATCH)], start, int(STALL_WATCH))
            print(f"  after a {stall:g} s stall: {stall_bins}")

        down = time.monotonic()
        cv.vault.set_outage(True)
        time.sleep(outage)
        up = time.monotonic()
        cv.vault.set_outage(False)
        outage_requests = len(cv.between(down, up))
        time.sleep(RECOVERY_WINDOW)
        # Then until every path has been asked for again (at most RECOVERY_LIMIT s).
        while len(paths_back(cv.between(up, time.monotonic()), up)) < pods * PATHS:
            if time.monotonic() >= up + RECOVERY_LIMIT:
                break
            time.sleep(0.5)
        back = paths_back(cv.between(up, up + RECOVERY_LIMIT), up)
        recovery_bins = per_second([t for t, _ in cv.between(up, up + RECOVERY_WINDOW)], up, int(RECOVERY_WINDOW))
        print(f"  outage: {outage_requests} requests dropped; after recovery: {recovery_bins}")
        back_early = sum(1 for t in back.values() if t < RECOVERY_WINDOW)
        dead = [p.args for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{len(dead)} sidecars exited during the run")
        return ModeResult(
            splay=splay,
            pods=pods,
            spawn_span=spawn_span,
            start_span=start_span,
            steady_bins=steady_bins,
            outage_requests=outage_requests,
            recovery_bins=recovery_bins,
            back_early=back_early,
            back=len(back),
            stall_bins=stall_bins,
        )
    finally:
        cv.gate.set()
        stop_all(procs)


def report(results: list[ModeResult], steady: float, outage: float) -> str:
    rows = [
        "| splay | pods | steady: mean req/s (ideal) | steady: busiest second | busiest / mean | "
        f"during the {outage:g} s outage: req/s | first {RECOVERY_WINDOW:g} s after recovery: busiest second | "
        f"/ steady mean | paths asked for again within {RECOVERY_WINDOW:g} s / {RECOVERY_LIMIT:g} s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        mean = r.steady_mean
        busiest = max(r.steady_bins)
        rec = max(r.recovery_bins)
        rows.append(
            f"| {'on' if r.splay else 'off'} | {r.pods} | {mean:.1f} ({r.ideal_mean:.1f}) | {busiest} | "
            f"**{busiest / mean:.2f}** | {r.outage_requests / outage:.1f} | {rec} | **{rec / mean:.2f}** | "
            f"{r.back_early} / {r.back} of {r.pods * PATHS} |"
        )
    return "\n".join(rows)


# --- AWS throttling: botocore's standard vs adaptive retry mode ------------------------------------


class ThrottlingSsm:
    """127.0.0.1, the SSM JSON API: GetParameters answers every name it is asked for, except that
    the first ``first`` calls, or (``rate``) the calls above a token bucket of ``rate`` per second
    (AWS's per-account quota), get ``400 ThrottlingException``. moto cannot throttle."""

    def __init__(self, *, first: int = 0, rate: float | None = None) -> None:
        self.first, self.rate = first, rate
        self._lock = threading.Lock()
        self._tokens, self._stamp = rate or 0.0, time.monotonic()
        #: (arrival, throttled) of every call.
        self.calls: list[tuple[float, bool]] = []
        self._stack = ExitStack()
        self.url = self._stack.enter_context(serve_aws_json(self._answer))

    def _answer(self, target: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.throttled():
            return 400, {"__type": "ThrottlingException", "message": "Rate exceeded"}
        names = body.get("Names", [])
        parameters = [{"Name": n, "Type": "String", "Value": "v", "Version": 1} for n in names]
        return 200, {"Parameters": parameters, "InvalidParameters": []}

    def throttled(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if self.rate is None:
                throttled = len(self.calls) < self.first
            else:
                self._tokens = min(self.rate, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                throttled = self._tokens < 1
                if not throttled:
                    self._tokens -= 1
            self.calls.append((now, throttled))
            return throttled

    def stop(self) -> None:
        self._stack.close()


def throttling_row(label: str, mode: str, server: dict[str, Any], pods: int, names: int) -> str:
    """``pods`` SsmSources (one boto3 client each, ``mode`` retries, 3 attempts) fetch ``names``
    parameters each, all at once; returns a markdown row of what the server saw and what arrived."""
    import boto3
    import botocore.config

    from injector.refs import parse_reference
    from injector.sources import Fetched
    from injector.sources.aws_ssm import SsmClient, SsmSource

    os.environ.update(AWS_ENV)
    aws = ThrottlingSsm(**server)
    session = boto3.session.Session(region_name="us-east-1")
    retries = botocore.config.Config(retries={"mode": mode, "total_max_attempts": 3}, max_pool_connections=16)
    sources = [
        SsmSource(client=cast(SsmClient, session.client("ssm", endpoint_url=aws.url, config=retries)))
        for _ in range(pods)
    ]
    refs = [parse_reference(f"aws-ssm:/app/p{i}") for i in range(names)]
    arrived: list[int] = []
    done: list[float] = []
    start = time.monotonic()

    def fetch(source: SsmSource) -> None:
        results = source.fetch(refs)
        arrived.append(sum(isinstance(r, Fetched) for r in results.values()))
        done.append(time.monotonic() - start)

    threads = [threading.Thread(target=fetch, args=(source,)) for source in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    aws.stop()
    for source in sources:
        source.close()
    throttled = sum(1 for _, t in aws.calls if t)
    return (
        f"| {label} | {mode} | {pods * -(-names // 10)} | {len(aws.calls)} | {throttled} | "
        f"{sum(arrived)} of {pods * names} | {max(done):.2f} s |"
    )


def throttling_table() -> str:
    rows = [
        "| case | retry mode | GetParameters calls | requests at the server | throttled | values that arrived | "
        "last fetch done |",
        "|---|---|---|---|---|---|---|",
    ]
    cases = [
        ("first 2 calls throttled; 1 pod, 10 names", {"first": 2}, 1, 10),
        ("server limit 10/s; 1 pod, 300 names at once", {"rate": 10.0}, 1, 300),
        ("server limit 10/s; 40 pods, 10 names each, at once", {"rate": 10.0}, 40, 10),
    ]
    for label, server, pods, names in cases:
        for mode in ("standard", "adaptive"):
            rows.append(throttling_row(label, mode, server, pods, names))
    return "\n".join(rows)


def main() -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--pods", type=int, default=80)
    parser.add_argument("--steady", type=float, default=20.0, help="seconds of steady state measured")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds Vault does not answer")
    parser.add_argument("--quick", action="store_true", help="10 pods, 10 s steady, 10 s outage")
    parser.add_argument("--splay", choices=["both", "off", "on"], default="both", help="which modes to run")
    parser.add_argument("--min-backoff", help="refresh.min_backoff of the sidecars (default: theirs, 1s)")
    parser.add_argument("--stall", type=float, default=0.0, help="after the steady phase, hold every KV read this long")
    parser.add_argument("--aws-throttling", action="store_true", help="only the standard vs adaptive table")
    args = parser.parse_args()
    if args.aws_throttling:
        print(throttling_table())
        return 0
    if args.quick:
        args.pods, args.steady, args.outage = 10, 10.0, 10.0
    started = time.monotonic()
    info = machine()
    print(
        f"fleet: {args.pods} sidecars × {PATHS} KV paths, interval {INTERVAL:g} s; "
        f"{info['nproc']} CPUs, {info['memory']}, load {loadavg()}"
    )
    cv = CountingVault()
    results: list[ModeResult] = []
    try:
        seed(cv.vault, args.pods)
        with tempfile.TemporaryDirectory(prefix="injector-fleet-") as tmp:
            modes = {"both": (False, True), "off": (False,), "on": (True,)}[args.splay]
            for splay in modes:
                work = Path(tmp) / ("splay" if splay else "nosplay")
                results.append(
                    run_mode(
                        cv,
                        work,
                        pods=args.pods,
                        splay=splay,
                        steady=args.steady,
                        outage=args.outage,
                        min_backoff=args.min_backoff,
                        stall=args.stall,
                    )
                )
    finally:
        cv.vault.stop()
    print()
    print(
        f"Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, `python bench/fleet.py"
        f"{' '.join(['', *sys.argv[1:]])}`, {time.monotonic() - started:.0f} s, load at the end {loadavg()}."
    )
    print()
    print(report(results, args.steady, args.outage))
    for r in results:
        print(f"\nsplay {'on' if r.splay else 'off'}: steady bins {r.steady_bins}; recovery bins {r.recovery_bins}")
        if r.stall_bins:
            ratio = max(r.stall_bins) / (sum(r.stall_bins) / len(r.stall_bins))
            print(f"after a {args.stall:g} s stall: busiest / mean {ratio:.2f}, bins {r.stall_bins}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
