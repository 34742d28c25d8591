"""The libraries' floor: what a program costs that only imports the libraries a config needs.

Usage: ``python bench/libfloor.py [--clients] [--paused] [--no-yaml] [--vault URL] [--aws URL] BACKEND…``
with BACKEND among ``vault``, ``secretsmanager``, ``ssm``. Prints one JSON line and exits.

What it does, and nothing else: imports ``jinja2.sandbox`` and ``yaml`` (every config is a YAML file
whose templates render in Jinja2's sandbox; ``--no-yaml``: Jinja2's only), then hvac for ``vault``
and ``botocore.session`` for the AWS services: the template engine, the config parser and the
clients the injector is built on. They are imported as the injector imports them, by the injector's own functions
(``injector/_imports.py``, loaded alone): first, as every ``injector`` process begins, the
standard library's modules that the libraries import for what the injector seldom or never does
(zip archives, compressors, MIME types, XML …) are loaded but not run; then Jinja2 without running
its package's ``__init__`` (the template loaders and bytecode caches); urllib3 without running its ``http2`` package's
``__init__`` (the HTTP/2 opt-in, which imports importlib.metadata); requests without its optional
character-set detector (charset_normalizer, chardet) and without running ``idna``'s ``__init__``;
botocore without JMESPath; and of hvac, the modules of its HTTP adapter and of the four auth
methods the Vault source calls (``injector/sources/vault_client.py``, loaded alone), without the
package initialisers that import the rest of its API.
With ``--clients`` it also builds one client per backend: for Vault the injector's own
(``vault_client.Client``: hvac's ``JSONAdapter`` and the four auth method objects on it), for AWS the plain way
(``botocore.session.get_session().create_client(service, …)``); it sends no request.
With ``--paused`` all of it runs with the cyclic garbage collector off, as ``injector init`` starts
up (``injector/process/hygiene.py``): the floor of the bench's ``init`` rows. With ``--no-yaml``
it does not import PyYAML: a sidecar reads its config's YAML in a child process and never imports
it (``injector/config/document.py``), so this is the floor of the sidecar rows.

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


def parse(argv: list[str]) -> tuple[list[str], bool, bool, bool, str, str | None]:
    """The arguments, by hand: argparse would add its own imports to the floor."""
    backends, clients, paused, with_yaml, vault, aws = [], False, False, True, "http://127.0.0.1:8200", None
    words = iter(argv)
    for word in words:
        if word == "--clients":
            clients = True
        elif word == "--paused":
            paused = True
        elif word == "--no-yaml":
            with_yaml = False
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
    return backends, clients, paused, with_yaml, vault, aws


def injector_module(name: str):  # -> types.ModuleType, unannotated: importing typing would weigh on the floor
    """The injector's ``injector/NAME.py`` (``_imports``, ``sources/vault_client``), loaded on its
    own, without the injector's package (``_imports`` imports only the standard library,
    ``vault_client`` only hvac and requests), so the floors load and build the libraries exactly as
    the injector does: the measured code's copy (``PYTHONPATH``), else this repository's."""
    import importlib.util

    spec = importlib.util.find_spec("injector")
    folders = list(spec.submodule_search_locations or ()) if spec is not None else []
    folders.append(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "injector"))
    paths = [os.path.join(folder, *name.split("/")) + ".py" for folder in folders]
    path = next(path for path in paths if os.path.isfile(path))
    module_spec = importlib.util.spec_from_file_location(f"_injector_{os.path.basename(name)}", path)
    if module_spec is None or module_spec.loader is None:
        raise SystemExit(f"libfloor.py: cannot load {path}")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def main() -> None:
    backends, want_clients, paused, with_yaml, vault, aws_url = parse(sys.argv[1:])
    if paused:
        import gc  # built in: nothing to load

        gc.disable()
    python_kib = rss_kib()
    started = time.perf_counter()
    lean = injector_module("_imports")
    getattr(lean, "stdlib_without_unused_modules", lambda: None)()  # first, as every injector process does
    lean.jinja2_without_its_loaders()
    import jinja2.sandbox  # noqa: F401 - importing is what is measured

    if with_yaml:
        import yaml  # noqa: F401

    aws = [b for b in backends if b != "vault"]
    lean.urllib3_without_http2_opt_in()
    if "vault" in backends:
        lean.requests_without_idna()
        lean.requests_without_charset_detection()
        lean.hvac_without_its_catalogue()
        vault_client = injector_module("sources/vault_client")  # imports the hvac modules the source uses
    if aws:
        # botocore's own data, whole (the bench gives injector processes the image's cut-down copy).
        os.environ.pop("AWS_DATA_PATH", None)
        lean.botocore_without_jmespath()
        import botocore.session
    imported = time.perf_counter()
    imports_kib = rss_kib()
    clients: list[object] = []
    if want_clients:
        if "vault" in backends:
            settings = {"verify": True, "cert": None, "timeout": 10, "namespace": None, "allow_redirects": False}
            session = sys.modules["requests"].Session()
            clients.append(vault_client.Client(url=vault, session=session, **settings))
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
