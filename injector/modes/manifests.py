"""Injector configs inside Kubernetes manifests: what ``injector validate --kustomize DIR`` checks.

In a pod the config and its templates are ConfigMap keys, mounted as files. Given the rendered
manifests (``kubectl kustomize DIR``'s output), ``scan`` finds each container that runs ``injector
init|sidecar|exec|render|validate``, follows its ``--config PATH`` (or ``INJECTOR_CONFIG``) through
its ``volumeMounts`` to the ConfigMap key holding the config, and collects every file the container
sees from ConfigMap volumes, by its path in the pod. A template ``source:`` then resolves exactly as
in the pod: relative to the config's folder, in whichever ConfigMap is mounted there.

A ConfigMap with an ``injector.yaml`` key that no injector container mounts is checked too; with
no pod to follow, its sources resolve by file name among that ConfigMap's keys, then among the
other ConfigMaps of its namespace (the report says so).

``scan`` is pure (YAML text in, ``Scan`` out); ``kustomize_build`` runs kubectl, and ``check``
validates one embedded config with ``validate_config`` (compiles templates, fetches nothing).
"""

from __future__ import annotations

import posixpath
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from injector.errors import ConfigError, InjectorError

__all__ = ["EmbeddedConfig", "PodFile", "Scan", "check", "check_all", "kustomize_build", "scan"]

#: The subcommands that read ``--config``.
CONFIG_COMMANDS = frozenset({"init", "sidecar", "exec", "render", "validate"})
#: ConfigMap keys taken for injector configs when no injector container names them.
CONFIG_KEYS = ("injector.yaml", "injector.yml")
KUSTOMIZE_TIMEOUT = 120.0
#: kubectl's log prefix (``E1204 23:01:53.711839   31012 run.go:72] ``), dropped from its error line.
_KLOG_PREFIX = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ \S+\] ")

Doc = dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class PodFile:
    """A file a container sees, from a ConfigMap key."""

    text: str
    configmap: str
    key: str

    @property
    def origin(self) -> str:
        return f"ConfigMap {self.configmap}, key {self.key}"


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbeddedConfig:
    """One injector config found in the manifests, with the files its templates may read."""

    #: Which workload, containers and ConfigMap key: the prefix of every message about it.
    where: str
    config: PodFile
    #: Where the pod reads the config; relative ``source:`` paths resolve against its folder.
    config_path: str
    #: Path in the pod → file, for every ConfigMap-backed file the container sees; or, when
    #: ``by_name``, file name → file.
    files: Mapping[str, PodFile]
    by_name: bool = False
    #: The container's literal ``env`` values (``INJECTOR_OUTPUT_DIR``, ``VAULT_ADDR`` …).
    environ: Mapping[str, str] = field(default_factory=dict)
    #: The container's ``--output-dir`` flag, if it has one.
    output_dir: str | None = None

    def find(self, source: str) -> PodFile | None:
        """The file a template ``source:`` (already resolved against the config's folder) reads."""
        if self.by_name:
            return self.files.get(posixpath.basename(source))
        return self.files.get(posixpath.normpath(source))


@dataclass(frozen=True, slots=True, kw_only=True)
class Scan:
    configs: tuple[EmbeddedConfig, ...]
    #: Injector containers whose config could not be followed (not in a ConfigMap of these manifests).
    warnings: tuple[str, ...] = ()
    #: Configs that cannot work: the pod would fail (a ConfigMap without the key --config names).
    errors: tuple[str, ...] = ()


# --- reading the manifests ------------------------------------------------------------------------


def documents(text: str) -> list[Doc]:
    """The objects of a multi-document YAML text; ``kind: List`` is flattened."""
    try:
        loaded = list(yaml.safe_load_all(text))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"manifests: invalid YAML{where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError:
        raise ConfigError("manifests: invalid YAML") from None
    docs: list[Doc] = []
    for doc in loaded:
        if isinstance(doc, dict) and doc.get("kind") == "List":
            docs += [item for item in doc.get("items") or [] if isinstance(item, dict)]
        elif isinstance(doc, dict):
            docs.append(doc)
    return docs


def _meta(doc: Doc) -> tuple[str | None, str]:
    meta = doc.get("metadata") or {}
    return meta.get("namespace"), str(meta.get("name", "?"))


def _pod_spec(doc: Doc) -> Doc | None:
    spec = doc.get("spec") or {}
    if doc.get("kind") == "Pod":
        return spec if isinstance(spec, dict) else None
    if doc.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    template = (spec.get("template") or {}).get("spec") if isinstance(spec, dict) else None
    return template if isinstance(template, dict) and "containers" in template else None


def _injector_args(container: Doc) -> list[str] | None:
    """The arguments after ``injector`` when the container runs the injector, else None."""
    command = [str(a) for a in container.get("command") or []]
    argv = command + [str(a) for a in container.get("args") or []]
    if argv and posixpath.basename(argv[0]) == "injector":
        return argv[1:]
    if len(argv) >= 3 and posixpath.basename(argv[0]).startswith("python") and argv[1:3] == ["-m", "injector"]:
        return argv[3:]
    if not command and argv and argv[0] in CONFIG_COMMANDS:
        return argv  # no command: the image's ENTRYPOINT ["injector"] runs with these args
    return None


def _flag(args: list[str], long: str, short: str | None = None) -> str | None:
    names = {long} | ({short} if short else set())
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg in names and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(long + "="):
            return arg.split("=", 1)[1]
        if short and arg.startswith(short) and len(arg) > len(short) and not arg.startswith("--"):
            return arg[len(short) :]
    return None


def _literal_env(container: Doc) -> dict[str, str]:
    return {
        str(e["name"]): str(e["value"])
        for e in container.get("env") or []
        if isinstance(e, dict) and "name" in e and e.get("value") is not None
    }


ConfigMaps = Mapping[tuple[str | None, str], Doc]


def _configmap_files(ref: Doc, namespace: str | None, configmaps: ConfigMaps) -> dict[str, PodFile] | None:
    """Relative path → file of a ``configMap`` volume (or projected source); None if not in the manifests."""
    doc = configmaps.get((namespace, str(ref.get("name"))))
    if doc is None:
        return None
    name = _meta(doc)[1]
    data = {str(k): str(v) for k, v in (doc.get("data") or {}).items()}
    items = ref.get("items")
    if items:
        pairs = [(str(i["key"]), str(i["path"])) for i in items if str(i.get("key")) in data]
    else:
        pairs = [(key, key) for key in data]
    return {posixpath.normpath(path): PodFile(text=data[key], configmap=name, key=key) for key, path in pairs}


def _volume_files(volume: Doc | None, namespace: str | None, configmaps: ConfigMaps) -> dict[str, PodFile] | None:
    if volume is None:
        return {}
    if "configMap" in volume:
        return _configmap_files(volume["configMap"] or {}, namespace, configmaps)
    files: dict[str, PodFile] = {}
    for source in (volume.get("projected") or {}).get("sources") or []:
        if "configMap" in source:
            found = _configmap_files(source["configMap"] or {}, namespace, configmaps)
            if found is None:
                return None
            files.update(found)
    return files


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


@dataclass(slots=True)
class _View:
    """The ConfigMap-backed files one container sees, and the mounts it could not follow."""

    files: dict[str, PodFile] = field(default_factory=dict)
    #: mountPath → why its files are unknown (a Secret, a ConfigMap not in the manifests …).
    unknown: dict[str, str] = field(default_factory=dict)

    def why_missing(self, path: str) -> str | None:
        roots = [root for root in self.unknown if _under(path, root)]
        return self.unknown[max(roots, key=len)] if roots else None


def _container_view(pod: Doc, container: Doc, namespace: str | None, configmaps: ConfigMaps) -> _View:
    volumes = {str(v.get("name")): v for v in pod.get("volumes") or [] if isinstance(v, dict)}
    view = _View()
    # Shallow mounts first: a deeper mount hides what the shallower one has below it, as in the pod.
    mounts = sorted(container.get("volumeMounts") or [], key=lambda m: posixpath.normpath(m["mountPath"]).count("/"))
    for mount in mounts:
        root = posixpath.normpath(str(mount["mountPath"]))
        view.files = {p: f for p, f in view.files.items() if not _under(p, root)}
        view.unknown = {p: w for p, w in view.unknown.items() if not _under(p, root)}
        volume = volumes.get(str(mount["name"]))
        found = _volume_files(volume, namespace, configmaps)
        if found is None:
            view.unknown[root] = f"volume {mount['name']} is a ConfigMap these manifests do not contain"
            continue
        if not found and volume is not None and "configMap" not in volume:
            view.unknown[root] = f"volume {mount['name']} is not a ConfigMap"
            continue
        sub = posixpath.normpath(str(mount["subPath"])) if mount.get("subPath") else None
        for rel, file in found.items():
            if sub is None:
                view.files[posixpath.join(root, rel)] = file
            elif rel == sub:
                view.files[root] = file
            elif _under(rel, sub):
                view.files[posixpath.join(root, rel[len(sub) + 1 :])] = file
    return view


def _describe(doc: Doc) -> str:
    namespace, name = _meta(doc)
    return f"{doc.get('kind')} {namespace + '/' if namespace else ''}{name}"


def scan(text: str) -> Scan:
    """Every injector config in the rendered manifests ``text``, with the files its templates read."""
    docs = documents(text)
    configmaps = {_meta(d): d for d in docs if d.get("kind") == "ConfigMap"}
    found: dict[tuple[str, str, str], tuple[list[str], EmbeddedConfig]] = {}
    warnings: list[str] = []
    errors: list[str] = []
    covered: set[tuple[str | None, str, str]] = set()
    for doc in docs:
        pod = _pod_spec(doc)
        if pod is None:
            continue
        namespace = _meta(doc)[0]
        for container in (pod.get("initContainers") or []) + (pod.get("containers") or []):
            args = _injector_args(container)
            if args is None or not args or args[0] not in CONFIG_COMMANDS:
                continue
            where = f"{_describe(doc)} container {container.get('name')}"
            env = _literal_env(container)
            path = _flag(args, "--config", "-c") or env.get("INJECTOR_CONFIG")
            if path is None:
                warnings.append(f"{where}: `injector {args[0]}` has no --config: not checked")
                continue
            path = posixpath.normpath(path)
            view = _container_view(pod, container, namespace, configmaps)
            config = view.files.get(path)
            if config is None:
                why = view.why_missing(path)
                if why is not None:
                    warnings.append(f"{where}: --config {path}: {why}: not checked")
                else:
                    errors.append(f"{where}: --config {path}: no ConfigMap mounted into the container has this file")
                continue
            covered.add((namespace, config.configmap, config.key))
            # injector-init and the sidecar usually mount the same files: check them once.
            key = (_describe(doc), path, repr(sorted((p, f.configmap, f.key) for p, f in view.files.items())))
            if key in found:
                found[key][0].append(str(container.get("name")))
                continue
            embedded = EmbeddedConfig(
                where="",
                config=config,
                config_path=path,
                files=view.files,
                environ=env,
                output_dir=_flag(args, "--output-dir"),
            )
            found[key] = ([str(container.get("name"))], embedded)
    configs = [
        replace(e, where=f"{workload} ({', '.join(names)}): {e.config_path} ({e.config.origin})")
        for (workload, _, _), (names, e) in found.items()
    ]
    configs += list(_unmounted_configs(configmaps, covered))
    return Scan(configs=tuple(configs), warnings=tuple(warnings), errors=tuple(errors))


def _unmounted_configs(configmaps: ConfigMaps, covered: set[tuple[str | None, str, str]]) -> Iterator[EmbeddedConfig]:
    for (namespace, name), doc in configmaps.items():
        data = {str(k): str(v) for k, v in (doc.get("data") or {}).items()}
        for key in CONFIG_KEYS:
            if key not in data or (namespace, name, key) in covered:
                continue
            files: dict[str, PodFile] = {}
            others = [d for (ns, n), d in configmaps.items() if ns == namespace and n != name]
            for other in [*others, doc]:  # this ConfigMap's own keys win
                for k, v in (other.get("data") or {}).items():
                    files[str(k)] = PodFile(text=str(v), configmap=_meta(other)[1], key=str(k))
            yield EmbeddedConfig(
                where=f"{_describe(doc)}, key {key} (no injector container mounts it: "
                "sources resolved by file name among the ConfigMaps' keys)",
                config=PodFile(text=data[key], configmap=name, key=key),
                config_path=f"/{key}",
                files=files,
                by_name=True,
            )


# --- rendering a kustomization ------------------------------------------------------------------------


def kustomize_build(folder: Path, *, timeout: float = KUSTOMIZE_TIMEOUT) -> str:
    """Returns ``kubectl kustomize FOLDER`` (else ``kustomize build FOLDER``): the rendered manifests.

    Raises:
        ConfigError: neither tool is installed, or the kustomization does not build.
    """
    if (kubectl := shutil.which("kubectl")) is not None:
        argv = [kubectl, "kustomize", str(folder)]
    elif (kustomize := shutil.which("kustomize")) is not None:
        argv = [kustomize, "build", str(folder)]
    else:
        raise ConfigError(
            f"{folder}: rendering a kustomization needs kubectl (or kustomize), and neither is installed; "
            "render it elsewhere and pass the output with --manifests FILE (or - for stdin)"
        )
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{folder}: `{' '.join(argv[1:])}` did not finish in {timeout:.0f}s") from None
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot run {argv[0]}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        lines = [_KLOG_PREFIX.sub("", line) for line in done.stderr.strip().splitlines()]
        raise ConfigError(
            f"{folder}: `{Path(argv[0]).name} {' '.join(argv[1:])}` failed: {lines[-1] if lines else done.returncode}"
        )
    return done.stdout


# --- checking ---------------------------------------------------------------------------------------


def check(embedded: EmbeddedConfig) -> tuple[str, tuple[str, ...]]:
    """Validates one embedded config as its pod reads it; returns (summary, warnings).

    Raises:
        InjectorError: every problem, one per line, each naming the config's ConfigMap key and, for a
            template, the ConfigMap key it comes from (the first problem's class and exit code).
    """
    from injector.config.load import load_config_text
    from injector.modes.validate import validate_config

    folder = Path(posixpath.dirname(embedded.config_path))
    try:
        config = load_config_text(
            embedded.config.text,
            path=Path(embedded.config_path),
            base_dir=folder,
            overrides={"output_dir": embedded.output_dir},
            environ=embedded.environ,
        )
    except ConfigError as exc:
        raise ConfigError(f"{embedded.where}: {exc}") from None
    problems: list[InjectorError] = []
    templates = []
    for template in config.templates:
        if template.source is None:
            templates.append(template)
            continue
        file = embedded.find(str(template.source))
        if file is None:
            seen = ", ".join(sorted(embedded.files)) or "none"
            problems.append(
                ConfigError(
                    f"{template.where} ({template.destination}): template file not found: {template.source} "
                    f"(files from ConfigMaps: {seen})"
                )
            )
            continue
        templates.append(replace(template, where=f"{template.where} [{file.origin}]", contents=file.text))
    try:
        report = validate_config(replace(config, templates=tuple(templates)), check_output_dir=False)
    except InjectorError as exc:
        problems.append(exc)
    if problems:
        lines = [line for problem in problems for line in str(problem).splitlines()]
        raise type(problems[0])("\n".join(f"{embedded.where}: {line}" for line in lines))
    return report.summary, report.warnings


def check_all(text: str) -> tuple[list[str], list[str]]:
    """Validates every injector config in the manifests ``text``; returns (summary lines, warnings).

    Raises:
        InjectorError: every problem of every config, one per line (the first problem's class).
        ConfigError: the manifests hold no injector config at all.
    """
    found = scan(text)
    lines: list[str] = []
    warnings = list(found.warnings)
    problems: list[InjectorError] = [ConfigError(error) for error in found.errors]
    for embedded in found.configs:
        try:
            summary, more = check(embedded)
        except InjectorError as exc:
            problems.append(exc)
            continue
        lines.append(f"{embedded.where}: {summary}")
        warnings += [f"{embedded.where}: {w}" for w in more]
    if problems:
        raise type(problems[0])("\n".join(str(p) for p in problems))
    if not lines:
        raise ConfigError(
            "no injector config in these manifests: no container runs `injector init|sidecar|exec --config PATH` "
            f"from a ConfigMap, and no ConfigMap has a key {' or '.join(CONFIG_KEYS)}"
        )
    return lines, warnings
