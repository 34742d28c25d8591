"""The libraries' floor: what a program costs that only imports the libraries a config needs.

Usage: ``python bench/libfloor.py [--clients] [--vault URL] [--aws URL] BACKEND…`` with BACKEND among
``vault``, ``secretsmanager``, ``ssm``. Prints one JSON line and exits.

What it does, and nothing else: imports ``jinja2.sandbox`` and ``yaml`` (every config is a YAML file
whose templates render in Jinja2's sandbox), then ``hvac`` for ``vault`` and ``botocore.session``
for the AWS services: the template engine, the config parser and the clients the injector is built
on. They are imported as the injector imports them (``injector/sources/__init__.py``): urllib3
without running its ``http2`` package's ``__init__`` (the HTTP/2 opt-in, which imports
importlib.metadata), and hvac with requests' optional character-set detector (charset_normalizer,
chardet) made unimportable.
With ``--clients`` it also builds one client per backend the plain way (``hvac.Client(url=…)``,
``botocore.session.get_session().create_client(service, …)``), and sends no request.

Output: ``python_kib`` (VmRSS before the first import), ``imports_kib`` (after the imports),
``rss_kib`` (at the end), ``imports_s`` and ``clients_s`` (perf_counter).

The imports alone are a floor: no program that uses these libraries can hold less, and no
``injector`` command can start faster than the process that imports them (the bench times this
script against ``python -c pass``). The clients are not one: a plain botocore session keeps the
endpoint data of every AWS service and whole service models, which the injector's does not
(``injector/sources/_botodata.py``), so an AWS sidecar can be below the "with clients" figure.
"""

from __future__ import annotations

import os
import sys
import time

STARTED = time.perf_counter()


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def parse(argv: list[str]) -> tuple[list[str], bool, str, str | None]:
    """The arguments, by hand: argparse would add its own imports to the floor."""
    backends, clients, vault, aws = [], False, "http://127.0.0.1:8200", None
    words = iter(argv)
    for word in words:
        if word == "--clients":
            clients = True
        elif word == "--vault":
            vault = next(words)
        elif word == "--aws":
            aws = next(words)
        elif word in ("vault", "secretsmanager", "ssm"):
            backends.append(word)
        else:
            raise SystemExit(f"libfloor.py: unknown argument {word!r} (see the module docstring)")
    if not backends:
        raise SystemExit("libfloor.py: name at least one backend: vault, secretsmanager, ssm")
    return backends, clients, vault, aws


def urllib3_without_http2_opt_in() -> None:
    """What ``injector.sources._urllib3_without_http2_opt_in`` does (importing it would add the
    injector's own modules to the floor)."""
    import importlib.machinery
    import importlib.util

    spec = importlib.util.find_spec("urllib3")
    folder = os.path.join(os.path.dirname(spec.origin or ""), "http2") if spec else ""
    if os.path.isfile(os.path.join(folder, "probe.py")):
        package = importlib.machinery.ModuleSpec("urllib3.http2", None, is_package=True)
        package.submodule_search_locations = [folder]
        sys.modules["urllib3.http2"] = importlib.util.module_from_spec(package)


def main() -> None:
    backends, want_clients, vault, aws_url = parse(sys.argv[1:])
    python_kib = rss_kib()
    started = time.perf_counter()
    import jinja2.sandbox  # noqa: F401 - importing is what is measured
    import yaml  # noqa: F401

    aws = [b for b in backends if b != "vault"]
    urllib3_without_http2_opt_in()
    if "vault" in backends:
        import warnings

        sys.modules["charset_normalizer"] = sys.modules["chardet"] = None  # type: ignore[assignment]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import hvac
    if aws:
        # botocore's own data, whole (the bench gives injector processes the image's cut-down copy).
        os.environ.pop("AWS_DATA_PATH", None)
        import botocore.session
    imported = time.perf_counter()
    imports_kib = rss_kib()
    clients: list[object] = []
    if want_clients:
        if "vault" in backends:
            clients.append(hvac.Client(url=vault, timeout=10))
        if aws:
            session = botocore.session.get_session()
            clients += [session.create_client(service, endpoint_url=aws_url) for service in aws]
    done = time.perf_counter()
    import json

    print(
        json.dumps(
            {
                "python_kib": python_kib,
                "imports_kib": imports_kib,
                "rss_kib": rss_kib(),
                "imports_s": imported - started,
                "clients_s": done - imported,
            }
        )
    )


if __name__ == "__main__":
    main()
