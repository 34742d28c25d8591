"""``injector validate``: check the config, templates and references without fetching anything."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

from injector.config.model import Config
from injector.errors import ConfigError, InjectorError
from injector.modes.exec import env_templates
from injector.sink import check_filesystem
from injector.template.render import Renderer

__all__ = ["ValidateReport", "validate_config"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidateReport:
    summary: str
    warnings: tuple[str, ...]


def validate_config(config: Config, *, check_output_dir: bool = True) -> ValidateReport:
    """Compiles every template and checks every reference and backend section; fetches nothing.

    ``check_output_dir=False`` skips the look at output_dir's filesystem: for a pod's config (from
    manifests), output_dir is in the pod, not on this machine.

    Raises:
        InjectorError: every problem found, one per line (the first one's class and exit code).
    """
    renderer = Renderer(secrets=config.secrets, limits=config.limits)
    problems: list[InjectorError] = []
    schemes: Counter[str] = Counter()
    refs = set(config.secrets.values())
    for template in [*config.templates, *env_templates(config)]:
        try:
            compiled = renderer.compile(template)
            refs |= renderer.static_refs(compiled)
        except InjectorError as exc:
            problems.append(exc)
    for ref in {r.base for r in refs}:
        schemes[ref.scheme] += 1
    if schemes["vault"] and config.vault is None:
        problems.append(ConfigError("vault: references are used but the config has no vault: section"))
    if problems:
        first = problems[0]
        raise type(first)("\n".join(str(p) for p in problems)) if len(problems) > 1 else first
    warnings = []
    if (schemes["aws-sm"] or schemes["aws-ssm"]) and not (
        config.aws.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    ):
        warnings.append("aws: references are used but no region is set (aws.region or AWS_REGION)")
    if check_output_dir and config.output_dir.is_dir() and not config.allow_non_tmpfs:
        kind = check_filesystem(config.output_dir)
        if kind not in ("tmpfs", "ramfs"):
            warnings.append(f"output_dir {config.output_dir} is on {kind}, not tmpfs: init will refuse it here")
    by_scheme = ", ".join(f"{scheme}: {n}" for scheme, n in sorted(schemes.items())) or "none"
    summary = (
        f"ok: {len(config.templates)} template(s), {sum(schemes.values())} distinct reference(s) ({by_scheme}); "
        f"output_dir {config.output_dir}"
    )
    return ValidateReport(summary=summary, warnings=tuple(warnings))
