"""The ``injector`` command. The only place where exceptions become exit codes (errors.py lists them).

Every failure ends as one line on stderr, ``injector: error: <what failed, where, what to do>``,
and the exit code of its class, so an init container's failure reads well in ``kubectl describe``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click
from click.core import ParameterSource

from injector import __version__
from injector.commands import OPTIONS, OVERRIDES, exit_codes, run_init, run_sidecar, start_up
from injector.errors import ConfigError
from injector.logs import LOG_FORMATS, LOG_LEVELS, configure_logging
from injector.process.hygiene import make_undumpable, one_malloc_arena
from injector.units import parse_duration

__all__ = ["cli", "main"]

F = TypeVar("F", bound=Callable[..., Any])


class _Duration(click.ParamType):  # type: ignore[type-arg]  # click < 8.2 is not generic
    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = _Duration()


def logging_options(func: F) -> F:
    """Adds ``--log-format`` and ``--log-level`` to a command (every command has them)."""
    func = click.option(
        "--log-level",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        default=OPTIONS["--log-level"][3],
        envvar=OPTIONS["--log-level"][1],
        show_default=True,
        help="Least severe level logged.",
    )(func)
    return click.option(
        "--log-format",
        type=click.Choice(LOG_FORMATS),
        default=OPTIONS["--log-format"][3],
        envvar=OPTIONS["--log-format"][1],
        show_default=True,
        help="text for people, json for log pipelines.",
    )(func)


def config_options(func: F) -> F:
    """Adds ``--config`` and the flags that override config keys."""
    func = click.option(
        "--output-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar=OPTIONS["--output-dir"][1],
        help="Override output_dir (the in-memory volume shared with the app).",
    )(func)
    return click.option(
        "--config",
        "-c",
        "config_path",
        required=True,
        envvar=OPTIONS["--config"][1],
        type=click.Path(dir_okay=False, path_type=Path),
        help="The YAML config file (env: INJECTOR_CONFIG).",
    )(func)


def _flag_overrides(**params: Any) -> dict[str, str]:
    """Returns the config keys given as flags on the command line: they win over the file.

    The same options read INJECTOR_OUTPUT_DIR / INJECTOR_HEALTH_ADDRESS, but a value from the
    environment only fills what the file leaves out (``apply_env``), as the README says.
    """
    ctx = click.get_current_context()
    return {
        OVERRIDES[name]: str(value)
        for name, value in params.items()
        if value is not None and ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
    }


def _load(config_path: Path, output_dir: Path | None, log_level: str, log_format: str) -> Any:
    return start_up(log_level, log_format, config_path, _flag_overrides(output_dir=output_dir))


# Help texts are arguments, not docstrings: the image's bytecode has no docstrings (compiled at
# optimization level 2, 1 to 1.5 MiB less per sidecar; see the Dockerfile), `--help` still says it all.
@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    help="""Render Vault and AWS secrets and config templates into a pod's in-memory volume, keep them
    fresh, and tell the app to reload.

    \b
    Start here:  injector validate -c injector.yaml    (no fetching)
                 injector render -c injector.yaml --dry-run
                 injector init -c injector.yaml        (init container)
                 injector sidecar -c injector.yaml     (native sidecar)
    """,
)
@click.version_option(__version__, prog_name="injector")
def cli() -> None:
    pass


@cli.command(
    help="""Render every template once into output_dir, then exit 0 (the init container).

    Transient backend errors are retried with backoff and jitter until --timeout; anything else
    fails at once with an exit code that says what kind of thing failed (see README).
    """,
)
@config_options
@click.option(
    "--timeout",
    type=DURATION,
    default=OPTIONS["--timeout"][3],
    show_default=True,
    envvar=OPTIONS["--timeout"][1],
    help="Give up (non-zero exit) when transient errors last this long.",
)
@logging_options
def init(config_path: Path, output_dir: Path | None, timeout: float, log_level: str, log_format: str) -> None:
    run_init(
        config_path=config_path,
        timeout=timeout,
        log_level=log_level,
        log_format=log_format,
        overrides=_flag_overrides(output_dir=output_dir),
    )


@cli.command(
    help="""Keep every file fresh and tell the app when one changes, until SIGTERM (exit 0).

    Adopts what `injector init` wrote and its state_dir handoff (token and leases are renewed, not
    issued again), serves /healthz, /readyz and /metrics on health.address.
    """,
)
@config_options
@click.option(
    "--revoke-on-exit",
    is_flag=True,
    envvar=OPTIONS["--revoke-on-exit"][1],
    help="On SIGTERM, revoke the Vault leases and token instead of leaving them to expire.",
)
@click.option(
    "--health-address",
    envvar=OPTIONS["--health-address"][1],
    help="Override health.address (HOST:PORT of /healthz, /readyz, /metrics).",
)
@logging_options
def sidecar(
    config_path: Path,
    output_dir: Path | None,
    revoke_on_exit: bool,
    health_address: str | None,
    log_level: str,
    log_format: str,
) -> None:
    run_sidecar(
        config_path=config_path,
        revoke_on_exit=revoke_on_exit,
        log_level=log_level,
        log_format=log_format,
        overrides=_flag_overrides(output_dir=output_dir, health_address=health_address),
    )


@cli.command(
    "exec",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    help="""Render, then run CMD with the env: secrets in its environment, and keep both fresh.

    For compose, VMs and container entrypoints outside Kubernetes:

    \b
    injector exec -c injector.yaml -- ./server --port 8080

    While CMD runs, a changed env: value restarts it (exec.kill_signal, exec.kill_timeout,
    exec.splay) and a changed file fires its on_change notifiers ({signal: SIGHUP, child: true}
    signals CMD). SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2 are forwarded to CMD. Exits with
    CMD's exit code (128+N if signal N ended it); CMD is never started if the first render fails.
    As PID 1 it also reaps orphaned processes.
    """,
)
@config_options
@click.option(
    "--timeout",
    type=DURATION,
    default=OPTIONS["--timeout"][3],
    show_default=True,
    envvar=OPTIONS["--timeout"][1],
    help="Give up before starting CMD when transient errors of the first render last this long.",
)
@click.option(
    "--revoke-on-exit",
    is_flag=True,
    envvar=OPTIONS["--revoke-on-exit"][1],
    help="Once CMD has stopped, revoke the Vault leases and token instead of leaving them to expire.",
)
@click.option(
    "--health-address",
    envvar=OPTIONS["--health-address"][1],
    help="Override health.address (HOST:PORT of /healthz, /readyz, /metrics).",
)
@logging_options
@click.argument("command", metavar="-- CMD [ARGS]...", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(
    config_path: Path,
    output_dir: Path | None,
    timeout: float,
    revoke_on_exit: bool,
    health_address: str | None,
    log_level: str,
    log_format: str,
    command: tuple[str, ...],
) -> None:
    configure_logging(log_level, log_format)
    make_undumpable()
    one_malloc_arena()  # before any thread: the reaper's is the first
    from injector.config.load import load_config
    from injector.modes.exec import ExecMode
    from injector.process.spawn import reap_zombies_if_pid1

    # Read in a child, as the sidecar's: this process runs as long as the command (config.document).
    # Before the reaper starts, whose fallback (``waitpid(-1)``) could take that child's status.
    config = load_config(
        config_path,
        overrides=_flag_overrides(output_dir=output_dir, health_address=health_address),
        elsewhere=True,
    )
    reap_zombies_if_pid1()
    code = ExecMode(config, command, revoke_on_exit=revoke_on_exit, timeout=timeout).run()
    sys.exit(code)


@cli.command(
    help="""Check the config, template syntax, references and destinations without fetching anything.

    With --kustomize DIR (or --manifests FILE), check each injector config in the ConfigMaps of the
    manifests, as its pod reads it: template sources are the ConfigMap keys mounted where the
    container's --config path says.
    """,
)
@click.option(
    "--config",
    "-c",
    "config_path",
    envvar="INJECTOR_CONFIG",
    type=click.Path(path_type=Path),
    help="The YAML config file (env: INJECTOR_CONFIG); a folder is taken as --kustomize.",
)
@click.option(
    "--kustomize",
    "-k",
    "kustomize_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Render this kustomize folder with `kubectl kustomize` and check every injector config in it.",
)
@click.option(
    "--manifests",
    "-f",
    "manifests",
    type=click.File("r", encoding="utf-8"),
    help="Check every injector config in these rendered manifests (a YAML file, or - for stdin).",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="INJECTOR_OUTPUT_DIR",
    help="Override output_dir (with --config only).",
)
@logging_options
def validate(
    config_path: Path | None,
    kustomize_dir: Path | None,
    manifests: TextIO | None,
    output_dir: Path | None,
    log_level: str,
    log_format: str,
) -> None:
    ctx = click.get_current_context()
    flags = ("config_path", "output_dir")
    given = {name for name in flags if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE}
    if config_path is not None and config_path.is_dir() and kustomize_dir is None and manifests is None:
        config_path, kustomize_dir, given = None, config_path, given - {"config_path"}
    if kustomize_dir is None and manifests is None:
        if config_path is None:
            raise click.UsageError("give --config FILE, --kustomize DIR or --manifests FILE")
        config = _load(config_path, output_dir, log_level, log_format)
        from injector.modes.validate import validate_config

        report = validate_config(config)
        lines, warnings = [report.summary], list(report.warnings)
    else:
        if given or (kustomize_dir is not None and manifests is not None):
            raise click.UsageError("give one of --config, --kustomize and --manifests (--output-dir needs --config)")
        configure_logging(log_level, log_format)
        from injector.modes.manifests import check_all, kustomize_build

        lines, warnings = check_all(kustomize_build(kustomize_dir) if kustomize_dir else _read(manifests))
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    for line in lines:
        click.echo(line)


@cli.command(
    help="""Fetch and render everything, and show what would change in output_dir; write nothing.""",
)
@config_options
@click.option("--dry-run/--no-dry-run", default=True, help="Only show what would change (the default).")
@click.option("--show", is_flag=True, help="Print each file's contents, every value-dependent span masked.")
@click.option("--show-values", is_flag=True, help="Print each file's contents unmasked (careful: secrets).")
@click.option("--issue", is_flag=True, help="Also issue dynamic credentials and certificates (revoked at the end).")
@click.option("--timeout", type=DURATION, default="30s", show_default=True, help="Give up after this long.")
@logging_options
def render(
    config_path: Path,
    output_dir: Path | None,
    dry_run: bool,
    show: bool,
    show_values: bool,
    issue: bool,
    timeout: float,
    log_level: str,
    log_format: str,
) -> None:
    if not dry_run:
        raise click.UsageError("render only previews; use `injector init` to write the files")
    config = _load(config_path, output_dir, log_level, log_format)
    from injector.modes.dryrun import preview

    for line in preview(config, timeout=timeout, show=show or show_values, mask=not show_values, issue=issue):
        click.echo(line)


@cli.command(
    help="""Mutating admission webhook: annotated pods get the init container, the sidecar and the volumes.

    Answers AdmissionReview v1 (and v1beta1) on POST /mutate; /healthz, /readyz, /metrics on the
    same port. README "Annotation-driven injection" lists the annotations.
    """,
)
@click.option(
    "--listen", default=":8443", show_default=True, envvar="INJECTOR_WEBHOOK_LISTEN", help="HOST:PORT to serve HTTPS."
)
@click.option(
    "--tls-cert",
    required=True,
    envvar="INJECTOR_WEBHOOK_TLS_CERT",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Serving certificate (PEM); re-read when it changes.",
)
@click.option(
    "--tls-key",
    required=True,
    envvar="INJECTOR_WEBHOOK_TLS_KEY",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Its private key (PEM).",
)
@click.option(
    "--defaults",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="INJECTOR_WEBHOOK_DEFAULTS",
    help="YAML of pod-wide annotation defaults (keys without the prefix).",
)
@click.option("--image", required=True, envvar="INJECTOR_WEBHOOK_IMAGE", help="The injector image the pods get.")
@click.option(
    "--kubernetes-version",
    default="1.29",
    show_default=True,
    envvar="INJECTOR_WEBHOOK_KUBERNETES_VERSION",
    help="The cluster's version: native sidecars by default from 1.29.",
)
@click.option(
    "--exclude-namespace",
    "exclude",
    multiple=True,
    envvar="INJECTOR_WEBHOOK_EXCLUDE_NAMESPACES",
    help="Never inject here (repeatable; the env var is space-separated); kube-system, kube-public, "
    "kube-node-lease always.",
)
@click.option(
    "--shutdown-delay",
    type=DURATION,
    default="5s",
    show_default=True,
    help="After SIGTERM, fail /readyz this long before closing.",
)
@logging_options
def webhook(
    listen: str,
    tls_cert: Path,
    tls_key: Path,
    defaults: Path | None,
    image: str,
    kubernetes_version: str,
    exclude: tuple[str, ...],
    shutdown_delay: float,
    log_level: str,
    log_format: str,
) -> None:
    configure_logging(log_level, log_format)
    try:
        from injector.webhook.server import serve_webhook
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"injector webhook needs the webhook extra ({exc.name} is missing): pip install 'tmpfs-injector[webhook]'"
        ) from None

    sys.exit(
        serve_webhook(
            listen=listen,
            tls_cert=tls_cert,
            tls_key=tls_key,
            image=image,
            kubernetes_version=kubernetes_version,
            defaults=defaults,
            exclude=exclude,
            shutdown_delay=shutdown_delay,
        )
    )


@cli.command(
    "dev-vault",
    help="""Run the in-memory, Vault-API-compatible dev server on 127.0.0.1 until SIGTERM.

    For tests, the demo and local development; never production. It starts like
    `vault server -dev`: KV v2 at secret/, a pki/ mount and a database/ mount (issuing leased
    credentials), each with role `dev` and the --role roles (default: `app`, as in the README).
    """,
)
@click.option("--port", type=int, default=8200, show_default=True, help="Port on 127.0.0.1 (0 picks a free one).")
@click.option("--root-token", default="root", show_default=True, help="The root token, like `vault server -dev`.")
@click.option("--latency", type=DURATION, default="0s", show_default=True, help="Delay added to every response.")
@click.option("--tls", is_flag=True, help="Serve https with a fresh CA (see --ca-file).")
@click.option("--ca-file", type=click.Path(dir_okay=False, path_type=Path), help="With --tls: write the CA PEM here.")
@click.option("--kv-v1-mount", help="Also mount a KV v1 engine at this path.")
@click.option(
    "--role",
    "roles",
    multiple=True,
    default=("app",),
    show_default=True,
    help="Also create this pki/ and database/ role (repeatable); `app` is the README's example role.",
)
@logging_options
def dev_vault(
    port: int,
    root_token: str,
    latency: float,
    tls: bool,
    ca_file: Path | None,
    kv_v1_mount: str | None,
    roles: tuple[str, ...],
    log_level: str,
    log_format: str,
) -> None:
    configure_logging(log_level, log_format)
    serve_forever = _devvault("devvault.__main__", "serve_forever")

    serve_forever(
        "127.0.0.1", port, root_token, tls, latency=latency, kv_v1_mount=kv_v1_mount, ca_file=ca_file, roles=roles
    )


@cli.command(
    help="""The whole story on embedded backends: dev Vault + moto, init, an app, rotations, reloads.

    Needs nothing set up (moto comes with the `demo` extra, which `make demo` installs); prints a
    timeline and exits 0 when every change reached the app.
    """,
)
@logging_options
def demo(log_level: str, log_format: str) -> None:
    configure_logging("warning" if log_level == "info" else log_level, log_format)
    run_demo = _devvault("devvault.demo", "run_demo")
    sys.exit(run_demo(click.echo))


#: The dev Vault and the demo are a distribution of their own, never installed with injector.
DEVVAULT_INSTALL = "pip install './devvault[demo]'  (from a checkout of injector; `make demo` does it)"


def _devvault(module: str, name: str) -> Any:
    """Imports ``name`` from the devvault distribution, or exits saying how to install it."""
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("devvault"):
            raise
        click.echo(f"injector: error: this command needs the dev Vault, which is not installed: {DEVVAULT_INSTALL}",
                   err=True)
        sys.exit(ConfigError.exit_code)


def _read(stream: TextIO | None) -> str:
    return stream.read() if stream is not None else ""


def main() -> None:
    """Runs any command line through click; errors become one line and an exit code."""
    with exit_codes():
        try:
            cli.main(standalone_mode=False)
        except click.exceptions.Abort:
            click.echo("injector: aborted", err=True)
            sys.exit(1)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
