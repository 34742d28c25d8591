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
- ``stdlib_without_unused_modules``: the modules of the standard library that the libraries import
  for what the injector seldom or never does (zip archives, compressors, MIME types, XML,
  non-ASCII host names, encoded e-mail headers, ``~/.aws/config``) are loaded, not run, until
  something asks them for a name: 1.1–1.3 MiB of a Vault-only sidecar, 1.5–1.6 MiB of a Secrets
  Manager one.
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
    "UNUSED_STDLIB",
    "DeferredModule",
    "botocore_without_jmespath",
    "defer_inits",
    "http_server_without_html_entities",
    "hvac_without_its_catalogue",
    "jinja2_without_its_loaders",
    "requests_without_charset_detection",
    "requests_without_idna",
    "stdlib_without_unused_modules",
    "urllib3_without_http2_opt_in",
]


def jinja2_without_its_loaders() -> None:
    """Defers the ``__init__`` of the ``jinja2`` package (``defer_inits``).

    That file only gathers Jinja2's public names, and for them imports ``jinja2.loaders`` (the
    template loaders, with ``importlib.util`` and ``zipimport``) and ``jinja2.bccache`` (the
    bytecode caches, with ``pickle``, ``tempfile``, ``fnmatch`` and, through ``tempfile``,
    ``shutil``, ``bz2`` and ``lzma``). The injector compiles each template from the config's text
    in its own sandboxed environment, with no loader and no cache, and imports what it uses from
    the submodules that define it (``jinja2.environment``, ``jinja2.runtime``,
    ``jinja2.exceptions``, ``jinja2.sandbox``); compiled templates import ``jinja2.runtime``.
    ``jinja2.Environment`` and the rest still work in any code of the process, by running the
    ``__init__`` when first asked for."""
    defer_inits(("jinja2",))


def http_server_without_html_entities() -> None:
    """Defers the ``__init__`` of the standard library's ``html`` package (``defer_inits``).

    ``http.server`` imports ``html`` and calls ``html.escape`` only to write the body of an error
    page (``send_error``: a malformed request, a method the server does not serve). The package's
    ``__init__`` defines ``escape`` and ``unescape``, and for ``unescape`` imports
    ``html.entities``, HTML's named character references in four tables. The health server's
    probes (GET ``/healthz``, ``/readyz``, ``/metrics``) never get an error page; the first error
    page runs the ``__init__``, which imports nothing but ``re`` and ``html.entities``."""
    defer_inits(("html",))


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
    """Defers the ``__init__`` of the ``idna`` package (``defer_inits``).

    ``requests.packages`` imports ``idna`` for one thing: to alias it as ``requests.packages.idna``
    (the names of requests' long-gone vendored copy). requests calls it only to encode a host name
    that is not ASCII (``PreparedRequest.prepare_url``), and urllib3 likewise; that ``__init__``
    imports the IDNA code and its Unicode tables (``idna.core``, ``idna.idnadata``). A Vault
    address with a non-ASCII host name runs the ``__init__`` at its first request, which imports
    nothing but the package's own modules and ``unicodedata``."""
    defer_inits(("idna",))


#: Modules of the standard library that the libraries (and the standard library's own modules they
#: use) import at module level for what an injector process seldom or never does: the importer,
#: and what for. Parents come before their submodules.
UNUSED_STDLIB: dict[str, str] = {
    "zipfile": "requests.utils: a CA bundle inside a zip archive",
    "shutil": "tempfile, zipfile, http.server, the injector: copying files, removing a folder, finding a command",
    "bz2": "shutil, zipfile: whether this Python has the bzip2 compressor",
    "lzma": "shutil, zipfile: whether this Python has the LZMA compressor",
    "mimetypes": "urllib3.fields, http.server: the type of an uploaded or served file",
    "stringprep": "encodings.idna: host names that are not ASCII",
    "locale": "calendar: the names of months and days in the locale's language",
    "email.header": "email.utils, email.message: RFC 2047 encoded words in headers",
    "email.base64mime": "email.charset: base64 encoded words",
    "email.quoprimime": "email.charset: quoted-printable encoded words",
    "xml": "botocore.parsers: the XML protocols (Secrets Manager and SSM speak JSON)",
    "xml.etree": "botocore.parsers: the XML protocols",
    "xml.etree.ElementPath": "xml.etree.ElementTree: path queries on a parsed document",
    "xml.parsers": "botocore.parsers: the XML protocols",
    "xml.parsers.expat": "botocore.parsers: the XML protocols",
    "configparser": "botocore.configloader: ~/.aws/config and ~/.aws/credentials files",
}


def stdlib_without_unused_modules() -> None:
    """Defers the code of the standard library's modules in ``UNUSED_STDLIB`` (``defer_inits``).

    Each is imported by a module the injector loads, at module level, for something the injector
    does not do: it stays loaded but not run, and its own imports (``bz2`` and ``lzma`` load their
    compressors' extension modules) do not happen. Whatever asks one of them for a name (botocore
    reading a ``~/.aws/config`` file, ``shutil.which`` finding a reload command) runs its code then,
    and gets the whole module. Called first in every ``injector`` process, before anything imports
    them; a process that imported one already keeps it as it is."""
    defer_inits(tuple(UNUSED_STDLIB))


def botocore_without_jmespath() -> None:
    """Defers the ``__init__`` of the ``jmespath`` package (``defer_inits``).

    botocore imports ``jmespath`` at module level (``botocore.paginate``, ``botocore.waiter``,
    ``botocore.regions``) and calls it only in a paginator, in a waiter, and in the endpoint rules
    of the services whose operations name parameters by JMESPath expression. That ``__init__``
    imports the whole library (its lexer, parser, AST, functions and visitor); the AWS sources
    use no paginator and no waiter, and Secrets Manager's and SSM's rules use no expression. A
    call that needs JMESPath runs the ``__init__`` then; the library imports nothing of botocore,
    so that cannot wait on a module botocore is importing."""
    defer_inits(("jmespath",))


#: hvac's packages whose ``__init__`` imports a catalogue the Vault source does not use: ``hvac``
#: (``hvac.v1.Client``, which imports ``hvac.api``), ``hvac.api`` (every category) and
#: ``hvac.api.auth_methods`` (every auth method; ``vault_client`` imports four modules of it).
HVAC_CATALOGUES = ("hvac", "hvac.api", "hvac.api.auth_methods")


def hvac_without_its_catalogue() -> None:
    """Defers the ``__init__`` of hvac's packages (``HVAC_CATALOGUES``; ``defer_inits``).

    Importing a submodule (``hvac.adapters``, ``hvac.exceptions``,
    ``hvac.api.auth_methods.token``) then loads that file and what it imports, and nothing else;
    ``hvac.Client``, ``hvac.api.AuthMethods`` and the like still work, in any code of the process,
    by running the package's own ``__init__`` when first asked for."""
    defer_inits(HVAC_CATALOGUES)


def defer_inits(names: tuple[str, ...]) -> None:
    """Registers the modules and packages ``names`` (parents before their submodules) so that each
    one's code (a package's ``__init__``) runs at the first attribute asked of it that it does not
    have yet (``DeferredModule``), not at import.

    A name that is imported already (its code ran the usual way), that ``importlib`` does not find,
    or that is not Python code (an extension module is loaded by being created) is left as it is."""
    for name in names:
        if name in sys.modules:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:  # its parent package does not exist
            continue
        if spec is None or not isinstance(spec.loader, _PYTHON_LOADERS):
            continue
        module = importlib.util.module_from_spec(spec)
        module.__class__ = DeferredModule
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)  # what the import system does for a submodule


#: The loaders of modules written in Python (from source, or from bytecode alone).
_PYTHON_LOADERS = (importlib.machinery.SourceFileLoader, importlib.machinery.SourcelessFileLoader)

#: Serialises the deferred code (a module's code imports, and may ask another deferred module).
_INIT_LOCK = threading.RLock()
#: The deferred modules whose code is running, in this thread or another (under ``_INIT_LOCK``).
_running: set[str] = set()


class DeferredModule(types.ModuleType):
    """A module (or package) whose code has not run: the first attribute it lacks runs it (once),
    then it is a plain module.

    ``__path__`` of a plain module is not such an attribute: the import system asks every module
    for it (``from calendar import timegm`` first checks whether ``calendar`` is a package), and
    a plain module has none. Nor is the name of a package's submodule: the import system asks the
    package for it before importing it (``from hvac import utils``), and gets an
    ``AttributeError`` as from any package that has not imported that submodule yet. While the
    code runs, in the thread that runs it, a missing attribute is an ``AttributeError`` too, as in
    any module being imported; another thread waits for the code to end. Code that fails leaves
    the module deferred, so the next attribute asked runs it again and gets the same error.

    The wait is on this module's lock, which the import system's deadlock detection does not see:
    a thread importing a module that the running code also imports, and asking a deferred module
    for a name meanwhile, would wait for ever. The injector asks its deferred packages for no such
    name (its modules import their submodules, which do not run an ``__init__``), and the modules
    whose code may run later (JMESPath's in a botocore call, ``html``'s at an error page, the
    standard library's of ``UNUSED_STDLIB``) import only modules whose own code asks no deferred
    module for a name: modules imported already by then, extension modules, deferred ones, and
    ``_compression`` (``bz2``'s and ``lzma``'s); code that wants a whole module from several
    threads at once should import it before the injector defers it."""

    def __getattr__(self, name: str) -> Any:
        if name == "__path__" and not _is_package(self):
            raise AttributeError(f"module {self.__name__!r} has no attribute '__path__'")
        with _INIT_LOCK:
            if isinstance(self, DeferredModule):
                if self.__name__ in _running or _is_submodule(self, name):
                    raise AttributeError(f"module {self.__name__!r} has no attribute {name!r} (yet)")
                spec = self.__spec__
                if spec is None or spec.loader is None:  # both set by defer_inits
                    raise ImportError(f"cannot initialise {self.__name__}: it has no loader")
                _running.add(self.__name__)
                try:
                    spec.loader.exec_module(self)
                finally:
                    _running.discard(self.__name__)
                self.__class__ = types.ModuleType  # type: ignore[assignment]  # a plain module from now on
        return getattr(self, name)


def _is_package(module: types.ModuleType) -> bool:
    spec = module.__spec__
    return spec is not None and spec.submodule_search_locations is not None


def _is_submodule(package: types.ModuleType, name: str) -> bool:
    """Whether ``package`` has a submodule ``name``, found as the import system finds it, unloaded."""
    if name.startswith("__") or not _is_package(package):
        return False
    return importlib.machinery.PathFinder.find_spec(f"{package.__name__}.{name}", package.__path__) is not None
