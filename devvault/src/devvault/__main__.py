"""``python -m devvault``: run the dev Vault in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from devvault.server import DevVault

__all__ = ["main", "serve_forever"]


def serve_forever(host: str = "127.0.0.1", port: int = 8200,
                  root_token: str = "root",  # noqa: S107 (the dev root token, like vault -dev)
                  tls: bool = False, *, latency: float = 0.0, kv_v1_mount: str | None = None,
                  ca_file: Path | None = None, stop: threading.Event | None = None,
                  roles: Sequence[str] = ()) -> None:
    """Serves until ``stop`` is set (or SIGTERM/SIGINT when called from the main thread).

    Prints one line with the address. With ``tls`` and ``ca_file``, writes the listener's CA
    there so clients can verify it (``VAULT_CACERT``). Each of ``roles`` becomes a ``pki/`` and
    a ``database/`` role besides ``dev`` (written through the API, as an operator would).
    """
    stop = stop or threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    with DevVault(host=host, port=port, root_token=root_token, tls=tls,
                  kv_v1_mount=kv_v1_mount) as vault:
        vault.set_latency(latency)
        for role in roles:
            vault.add_dev_role(role)
        if ca_file is not None and vault.ca_pem is not None:
            ca_file.write_text(vault.ca_pem)
        print(f"dev vault listening on {vault.address}", flush=True)
        stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devvault",
        description="In-memory Vault-API-compatible dev server (never production).")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=8200, help="0 picks a free port")
    parser.add_argument("--root-token", default="root")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds added before every response")
    parser.add_argument("--tls", action="store_true", help="serve https with a fresh CA")
    parser.add_argument("--ca-file", type=Path, help="with --tls: write the CA PEM here")
    parser.add_argument("--kv-v1-mount", help="also mount KV v1 at this path")
    parser.add_argument("--role", action="append", default=[],
                        help="also create this pki/ and database/ role (repeatable)")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        serve_forever(args.host, args.port, args.root_token, args.tls, latency=args.latency,
                      kv_v1_mount=args.kv_v1_mount, ca_file=args.ca_file, roles=args.role)
    except (OSError, ValueError) as exc:
        print(f"devserver: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
