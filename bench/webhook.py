"""Webhook benchmark: admission latency and throughput of `injector webhook`, and its idle RSS.

    .venv/bin/python bench/webhook.py [--rounds 10] [--clients 10] [--per-client 10] [--distinct]

The real CLI runs as a subprocess (``injector webhook --listen 127.0.0.1:PORT``, JSON logs at
INFO as deploy/webhook has them, to a file), with a certificate made here (cryptography, via
devvault.certs). Each round, ``--clients`` threads, each with one keep-alive HTTPS connection (as
the API server keeps them), start together at a barrier and each send ``--per-client`` reviews
back to back: 100 reviews a round from 10 clients by default, up to 10 in flight. Latency is per
review at the client (request written → answer read and parsed); throughput is the round's
reviews over its wall time. The pod is a ReplicaSet's pod (generateName, two containers, an init
container, seven annotations, a signal notifier). By default every review carries the same
annotations, as a Deployment's replicas do (the webhook caches one plan per annotation set); with
``--distinct`` each review has a different template text, so every review compiles and validates
its config afresh. Every answer is checked (allowed, a patch).

The webhook's CPU time (utime+stime over the rounds) per review is the figure the machine's load
moves least. Idle RSS (VmRSS of the webhook process) is read 2 s after /readyz first answers (before any
review) and again 2 s after the last round. The bench asserts nothing; it prints one table.
"""

from __future__ import annotations

import argparse
import http.client
import json
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import INJECTOR, child_env, cpu_seconds, free_port, kib, loadavg, percentile, proc_status, wait_for
from cryptography.hazmat.primitives import serialization
from devvault.certs import issue, make_ca, new_key, private_pem
from procs import exit_on_sigterm

PREFIX = "injector.tmpfs.dev/"


def _pod(variant: int | None) -> dict[str, Any]:
    template = "DB_PASSWORD={{ secrets.db_password | dotenv_quote }}\n"
    if variant is not None:
        template += f"# variant {variant}\n"
    container = {
        "image": "docker.io/nginxinc/nginx-unprivileged:1.27-alpine",
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "web-7d9f8b6c5d-",
            "namespace": "shop",
            "labels": {"app.kubernetes.io/name": "web", PREFIX + "inject": "true"},
            "annotations": {
                PREFIX + "vault-address": "https://vault.vault.svc:8200",
                PREFIX + "vault-role": "web",
                PREFIX + "secret-db_password": "vault:database/creds/web#password",
                PREFIX + "secret-tls_crt": "vault:pki/issue/web?common_name=web.shop.svc#certificate",
                PREFIX + "file-tls_crt": "tls.crt",
                PREFIX + "template-app.env": template,
                PREFIX + "notify-tls_crt": "SIGHUP nginx",
            },
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f8b6c5d", "uid": "1"}],
        },
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 101, "seccompProfile": {"type": "RuntimeDefault"}},
            "initContainers": [{"name": "migrate", **container}],
            "containers": [{"name": "nginx", **container}, {"name": "exporter", **container}],
            "volumes": [{"name": "api-access", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}],
        },
    }


def _body(uid: str, variant: int | None) -> bytes:
    request = {
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "shop",
        "operation": "CREATE",
        "object": _pod(variant),
    }
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}).encode()


def _client(
    port: int, context: ssl.SSLContext, bodies: list[bytes], barrier: threading.Barrier, out: list[float]
) -> None:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    conn.connect()
    barrier.wait()
    for body in bodies:
        start = time.perf_counter()
        conn.request("POST", "/mutate", body=body, headers={"Content-Type": "application/json"})
        answer = json.loads(conn.getresponse().read())
        out.append(time.perf_counter() - start)
        assert answer["response"]["allowed"], answer
        assert answer["response"]["patch"], answer
    conn.close()


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--per-client", type=int, default=10)
    parser.add_argument("--distinct", action="store_true", help="a different annotation set in every review")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ca = make_ca("bench webhook CA", now=time.time(), ttl=3600)
        key = new_key()
        cert = issue(ca, common_name="webhook", dns_names=[], ip_sans=["127.0.0.1"], now=time.time(), ttl=3600, key=key)
        (folder / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (folder / "tls.key").write_text(private_pem(key))
        port = free_port()
        argv = [INJECTOR, "webhook", "--listen", f"127.0.0.1:{port}", "--tls-cert", str(folder / "tls.crt"),
                "--tls-key", str(folder / "tls.key"), "--image", "registry.example.com/injector:0.1.0",
                "--log-format", "json", "--shutdown-delay", "0s"]  # fmt: skip
        with open(folder / "webhook.log", "w") as log:
            process = subprocess.Popen(argv, stderr=log, env=child_env())
        context = ssl.create_default_context(cadata=ca.pem)
        try:
            wait_for(lambda: _ready(port, context), 30, "the webhook's /readyz")
            time.sleep(2)
            idle_start = kib(proc_status(process.pid)["VmRSS"])
            load = loadavg()
            cpu_before = cpu_seconds(process.pid)
            latencies: list[float] = []
            throughputs: list[float] = []
            serial = 0
            for _ in range(args.rounds):
                per_client: list[list[bytes]] = []
                for _c in range(args.clients):
                    bodies = []
                    for _r in range(args.per_client):
                        serial += 1
                        bodies.append(_body(f"uid-{serial}", serial if args.distinct else None))
                    per_client.append(bodies)
                barrier = threading.Barrier(args.clients + 1)
                results: list[list[float]] = [[] for _ in range(args.clients)]
                threads = [
                    threading.Thread(target=_client, args=(port, context, per_client[i], barrier, results[i]))
                    for i in range(args.clients)
                ]
                for thread in threads:
                    thread.start()
                barrier.wait()
                start = time.perf_counter()
                for thread in threads:
                    thread.join()
                wall = time.perf_counter() - start
                done = [x for r in results for x in r]
                assert len(done) == args.clients * args.per_client, "a client failed; see its traceback above"
                latencies += done
                throughputs.append(len(done) / wall)
            cpu = cpu_seconds(process.pid) - cpu_before
            time.sleep(2)
            idle_end = kib(proc_status(process.pid)["VmRSS"])
            peak = kib(proc_status(process.pid)["VmHWM"])
        finally:
            process.terminate()
            process.wait(10)
    mode = "distinct annotations (no cache hits)" if args.distinct else "one annotation set (a Deployment's replicas)"
    print(f"webhook, {args.rounds} rounds × {args.clients} clients × {args.per_client} reviews, {mode}")
    print(f"  latency  p50 {percentile(latencies, 50) * 1000:.1f} ms  p99 {percentile(latencies, 99) * 1000:.1f} ms  "
          f"max {max(latencies) * 1000:.1f} ms  ({len(latencies)} reviews)")  # fmt: skip
    print(f"  throughput  median {percentile(throughputs, 50):.0f} reviews/s per round; webhook CPU "
          f"{cpu / len(latencies) * 1000:.2f} ms a review (utime+stime)")  # fmt: skip
    print(f"  load average at the start (1/5/15 min): {load}")
    print(f"  RSS  idle after start {idle_start / 1024:.1f} MiB, idle after the load {idle_end / 1024:.1f} MiB, "
          f"peak (VmHWM) {peak / 1024:.1f} MiB")  # fmt: skip


def _ready(port: int, context: ssl.SSLContext) -> bool:
    try:
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=2)
        conn.request("GET", "/readyz")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
