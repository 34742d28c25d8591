"""How the injector imports its libraries: what a pod's process never calls is not loaded.

Each function here is called before the first module that imports its library (a source's
factory for the clients' libraries, ``injector.template``'s package for Jinja2), and changes
nothing in a process that imported the library already. What each saves, in resident memory of
an idle sidecar with 100 values and in start-up (``make bench``; the libraries' floors of
``bench/libfloor.py`` load the libraries with these same functions):

- ``jinja2_without_its_loaders``: Jinja2's package ``__init__``, which imports the template
  loaders and the bytecode caches (with ``pickle``, ``tempfile``, ``shutil``, ``bz2`` and
  ``lzma``), runs only if something asks for it. Templates are compiled from the config's text
  and never loaded from files by Jinja2: 0.5 MiB.
- ``http_server_without_html_entities``: the standard library's ``html`` package ``__init__``,
  which ``http.server`` imports for the escaping of its error pages, and which loads the table of
  HTML's 2,231 named character references, runs at the first error page, not at import: 0.3–0.4
  MiB of a Vault-only sidecar (an AWS one loads it anyway: botocore's documentation parser uses
  it).
- ``urllib3_without_http2_opt_in``: urllib3's ``http2`` package's ``__init__`` (the HTTP/2
  opt-in and its ``importlib.metadata``) is not run: 0.4 MiB and about 3 ms.
- ``requests_without_charset_detection``: requests gets no character-set detector: 3.2 MiB and
  about 10 ms.
- ``requests_without_idna``: the ``idna`` package, which requests imports only to alias it as
  ``requests.packages.idna``, loads its tables when a URL's host name is not ASCII, not at
  import: 0.2 MiB.
- ``botocore_without_jmespath``: JMESPath, the query language botocore imports for paginators,
  waiters and some services' endpoint rules, is loaded only if one of them runs. The AWS sources
  call ``GetParameters`` and ``BatchGetSecretValue``, which need none of them: 0.2 MiB.
- ``hvac_without_its_catalogue``: hvac's package initialisers, which import the class of every
  auth method, secrets engine and system endpoint hvac knows (68 modules) for ``hvac.Client`` to
  build one of each, run only if something asks for them. The Vault source calls hvac's HTTP
  adapter and four auth methods (``vault_client.Client``), 14 modules: 0.7–0.8 MiB, and about
  7 ms (a bare interpreter importing hvac over requests and building a client: +1.02 MiB and 9 ms
  with ``hvac.Client``, +0.18 MiB and 1.6 ms so).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import threading
import types
import warnings
from typing import Any

__all__ = [
    "DeferredPackage",
    "botocore_without_jmespath",
    "defer_package_inits",
    "http_server_without_html_entities",
    "hvac_without_its_catalogue",
    "jinja2_without_its_loaders",
    "requests_without_charset_detection",
    "requests_without_idna",
    "urllib3_without_http2_opt_in",
]


def jinja2_without_its_loaders() -> None:
    """Defers the ``__init__`` of the ``jinja2`` package (``defer_package_inits``).

    That file only gathers Jinja2's public names, and for them imports ``jinja2.loaders`` (the
    template loaders, with ``importlib.util`` and ``zipimport``) and ``jinja2.bccache`` (the
    bytecode caches, with ``pickle``, ``tempfile``, ``fnmatch`` and, through ``tempfile``,
    ``shutil``, ``bz2`` and ``lzma``). The injector compiles each template from the config's text
    in its own sandboxed environment, with no loader and no cache, and imports what it uses from
    the submodules that define it (``jinja2.environment``, ``jinja2.runtime``,
    ``jinja2.exceptions``, ``jinja2.sandbox``); compiled templates import ``jinja2.runtime``.
    ``jinja2.Environment`` and the rest still work in any code of the process, by running the
    ``__init__`` when first asked for."""
    defer_package_inits(("jinja2",))


def http_server_without_html_entities() -> None:
    """Defers the ``__init__`` of the standard library's ``html`` package (``defer_package_inits``).

    ``http.server`` imports ``html`` and calls ``html.escape`` only to write the body of an error
    page (``send_error``: a malformed request, a method the server does not serve). The package's
    ``__init__`` defines ``escape`` and ``unescape``, and for ``unescape`` imports
    ``html.entities``, HTML's named character references in four tables. The health server's
    probes (GET ``/healthz``, ``/readyz``, ``/metrics``) never get an error page; the first error
    page runs the ``__init__``, which imports nothing but ``re`` and ``html.entities``."""
    defer_package_inits(("html",))


def urllib3_without_http2_opt_in() -> None:
    """Lets urllib3 (requests' and botocore's HTTP library) load without running the ``__init__``
    of its ``urllib3.http2`` package.

    urllib3's connection module imports ``urllib3.http2.probe``, a small cache of which hosts speak
    HTTP/2, and so runs the package's ``__init__``. That file only defines the opt-in to HTTP/2
    (``inject_into_urllib3``, which needs the h2 library, not installed here), and for that opt-in
    imports ``importlib.metadata`` at module level. The package is registered here as a plain
    namespace over its own folder, so ``probe`` loads from its own file unchanged and connections
    behave as before; ``urllib3.http2.inject_into_urllib3`` does not exist in this process. A
    process that imported urllib3 already, or a urllib3 without that package (before 2.3), is left
    as it is."""
    if "urllib3" in sys.modules or "urllib3.http2" in sys.modules:
        return
    spec = importlib.util.find_spec("urllib3")
    locations = spec.submodule_search_locations if spec is not None else None
    folders = [os.path.join(folder, "http2") for folder in locations or ()]
    folders = [folder for folder in folders if os.path.isfile(os.path.join(folder, "probe.py"))]
    if not folders:
        return
    package = importlib.machinery.ModuleSpec("urllib3.http2", None, is_package=True)
    package.submodule_search_locations = folders
    # setdefault: the two AWS sources are built in two threads; the first registration stands.
    sys.modules.setdefault("urllib3.http2", importlib.util.module_from_spec(package))


def requests_without_charset_detection() -> None:
    """Imports requests (hvac's HTTP library) without a character-set detector.

    requests guesses the encoding of a body that names none with charset_normalizer (or chardet),
    and falls back to UTF-8 when neither can be imported. Vault answers JSON, which is UTF-8
    (RFC 8259), so the guess never runs, and guessing a hostile body's encoding is CPU spent on the
    attacker's terms. A process that imported requests already keeps it as it is."""
    if "requests" in sys.modules:
        return
    for name in ("charset_normalizer", "chardet"):
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]  # None: "cannot be imported"
    with warnings.catch_warnings():
        # requests warns once, at import, that it found no detector: that is the point.
        warnings.filterwarnings("ignore", message="Unable to find acceptable character detection")
        import requests  # noqa: F401


def requests_without_idna() -> None:
    """Defers the ``__init__`` of the ``idna`` package (``defer_package_inits``).

    ``requests.packages`` imports ``idna`` for one thing: to alias it as ``requests.packages.idna``
    (the names of requests' long-gone vendored copy). requests calls it only to encode a host name
    that is not ASCII (``PreparedRequest.prepare_url``), and urllib3 likewise; that ``__init__``
    imports the IDNA code and its Unicode tables (``idna.core``, ``idna.idnadata``). A Vault
    address with a non-ASCII host name runs the ``__init__`` at its first request, which imports
    nothing but the package's own modules and ``unicodedata``."""
    defer_package_inits(("idna",))


def botocore_without_jmespath() -> None:
    """Defers the ``__init__`` of the ``jmespath`` package (``defer_package_inits``).

    botocore imports ``jmespath`` at module level (``botocore.paginate``, ``botocore.waiter``,
    ``botocore.regions``) and calls it only in a paginator, in a waiter, and in the endpoint rules
    of the services whose operations name parameters by JMESPath expression. That ``__init__``
    imports the whole library (its lexer, parser, AST, functions and visitor); the AWS sources
    use no paginator and no waiter, and Secrets Manager's and SSM's rules use no expression. A
    call that needs JMESPath runs the ``__init__`` then; the library imports nothing of botocore,
    so that cannot wait on a module botocore is importing."""
    defer_package_inits(("jmespath",))


#: hvac's packages whose ``__init__`` imports a catalogue the Vault source does not use: ``hvac``
#: (``hvac.v1.Client``, which imports ``hvac.api``), ``hvac.api`` (every category) and
#: ``hvac.api.auth_methods`` (every auth method; ``vault_client`` imports four modules of it).
HVAC_CATALOGUES = ("hvac", "hvac.api", "hvac.api.auth_methods")


def hvac_without_its_catalogue() -> None:
    """Defers the ``__init__`` of hvac's packages (``HVAC_CATALOGUES``; ``defer_package_inits``).

    Importing a submodule (``hvac.adapters``, ``hvac.exceptions``,
    ``hvac.api.auth_methods.token``) then loads that file and what it imports, and nothing else;
    ``hvac.Client``, ``hvac.api.AuthMethods`` and the like still work, in any code of the process,
    by running the package's own ``__init__`` when first asked for."""
    defer_package_inits(HVAC_CATALOGUES)


def defer_package_inits(names: tuple[str, ...]) -> None:
    """Registers the packages ``names`` (parents first) so that each one's ``__init__`` runs at the
    first attribute asked of it that it does not have yet (``DeferredPackage``), not at import.

    Stops at the first name that is imported already (that package and those below it were
    initialised the usual way) or that ``importlib`` does not find as a package."""
    for name in names:
        if name in sys.modules:
            return
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or spec.submodule_search_locations is None:
            return
        module = importlib.util.module_from_spec(spec)
        module.__class__ = DeferredPackage
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)  # what the import system does for a submodule


#: Serialises the initialisers (an ``__init__`` imports, and may ask another deferred package).
_INIT_LOCK = threading.RLock()
#: The packages whose ``__init__`` is running, in this thread or another (under ``_INIT_LOCK``).
_running: set[str] = set()


class DeferredPackage(types.ModuleType):
    """A package whose ``__init__`` has not run: the first attribute it lacks runs it (once), then
    it is a plain module.

    The name of one of its submodules is not such an attribute: the import system asks the package
    for it before importing it (``from hvac import utils``), and gets an ``AttributeError`` as from
    any package that has not imported that submodule yet. While the ``__init__`` runs, in the
    thread that runs it, a missing attribute is an ``AttributeError`` too, as in any module being
    imported; another thread waits for the ``__init__`` to end. An ``__init__`` that fails leaves
    the package deferred, so the next attribute asked runs it again and gets the same error.

    The wait is on this module's lock, which the import system's deadlock detection does not see:
    a thread importing a module that the running ``__init__`` also imports, and asking the package
    for a name meanwhile, would wait for ever. The injector asks its deferred packages for no such
    name (its modules import their submodules, which do not run an ``__init__``), and the
    initialisers that may run later (JMESPath's in a botocore call, ``html``'s at an error page)
    import nothing that another thread could be importing at that moment; code that wants a
    whole package from several threads at once should import it before the injector defers it."""

    def __getattr__(self, name: str) -> Any:
        with _INIT_LOCK:
            if isinstance(self, DeferredPackage):
                if self.__name__ in _running or _is_submodule(self, name):
                    raise AttributeError(f"module {self.__name__!r} has no attribute {name!r} (yet)")
                spec = self.__spec__
                if spec is None or spec.loader is None:  # both set by defer_package_inits
                    raise ImportError(f"cannot initialise {self.__name__}: it has no loader")
                _running.add(self.__name__)
                try:
                    spec.loader.exec_module(self)
                finally:
                    _running.discard(self.__name__)
                self.__class__ = types.ModuleType  # type: ignore[assignment]  # a plain module from now on
        return getattr(self, name)


def _is_submodule(package: types.ModuleType, name: str) -> bool:
    """Whether ``package`` has a submodule ``name``, found as the import system finds it, unloaded."""
    if name.startswith("__"):
        return False
    return importlib.machinery.PathFinder.find_spec(f"{package.__name__}.{name}", package.__path__) is not None
