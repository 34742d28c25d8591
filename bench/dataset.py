"""The secrets, templates and configs the benchmarks use, and seeding them into the backends.

A data set of N values is a mix of the three remote backends:

- Vault KV v2 under ``secret/``: paths with two keys each (``user``, ``password``); templates use
  ``vault:secret/PATH#user`` and ``#password``, so two values share one KV path (one GET);
- Secrets Manager: plain-string secrets, ``aws-sm:NAME``;
- SSM Parameter Store: SecureString parameters, ``aws-ssm:/NAME``.

The values are shuffled (fixed seed) over the templates, so every template mixes backends and a
KV path's two keys usually land in different templates, which is what deduplication is for. Each
template line is ``VAR={{ secret("REF") }}``; ``baseline.py`` writes the same bytes from the plan
``Dataset.plan()`` gives it.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from backends import Backends

REGION = "us-east-1"


@dataclass(frozen=True)
class Value:
    """One templated value: the line ``var=<value>`` of one output file."""

    var: str
    kind: str  # vault | sm | ssm
    name: str  # KV path under secret/, secret name, or parameter name
    key: str | None = None  # vault only

    @property
    def ref(self) -> str:
        if self.kind == "vault":
            return f"vault:secret/{self.name}#{self.key}"
        if self.kind == "sm":
            return f"aws-sm:{self.name}"
        return f"aws-ssm:{self.name}"


@dataclass(frozen=True)
class Template:
    destination: str
    values: tuple[Value, ...]

    def source(self, *, named: bool = False) -> str:
        """``VAR={{ secret("REF") }}`` lines, or with ``named`` ``VAR={{ secrets.var }}`` (the config
        declares each reference under ``secrets:``, as deploy/ and the webhook write them)."""
        if named:
            return "".join(f"{v.var}={{{{ secrets.{v.var.lower()} }}}}\n" for v in self.values)
        return "".join(f'{v.var}={{{{ secret("{v.ref}") }}}}\n' for v in self.values)


@dataclass(frozen=True)
class Dataset:
    """``vault_paths`` KV paths (two values each), ``sm`` secrets and ``ssm`` parameters over
    ``templates`` templates, named under ``prefix`` so several data sets share the backends."""

    prefix: str
    vault_paths: int
    sm: int
    ssm: int
    templates: int

    @property
    def size(self) -> int:
        return 2 * self.vault_paths + self.sm + self.ssm

    def vault_path(self, i: int) -> str:
        return f"{self.prefix}/app-{i:04d}"

    def sm_name(self, i: int) -> str:
        return f"{self.prefix}/sm-{i:04d}"

    def ssm_name(self, i: int) -> str:
        return f"/{self.prefix}/ssm-{i:04d}"

    def values(self) -> list[Value]:
        out: list[Value] = []
        for i in range(self.vault_paths):
            out += [
                Value(var=f"V{i:04d}_USER", kind="vault", name=self.vault_path(i), key="user"),
                Value(var=f"V{i:04d}_PASSWORD", kind="vault", name=self.vault_path(i), key="password"),
            ]
        out += [Value(var=f"SM{i:04d}", kind="sm", name=self.sm_name(i)) for i in range(self.sm)]
        out += [Value(var=f"SSM{i:04d}", kind="ssm", name=self.ssm_name(i)) for i in range(self.ssm)]
        return out

    def layout(self) -> list[Template]:
        values = self.values()
        random.Random(7).shuffle(values)
        return [
            Template(destination=f"t{i:03d}.env", values=tuple(values[i :: self.templates]))
            for i in range(self.templates)
        ]

    def ideal_calls(self) -> dict[str, int]:
        """The fewest requests one refresh of every value needs: one GET per distinct KV path,
        BatchGetSecretValue per 20 secrets, GetParameters per 10 parameters."""
        return {
            "vault GET secret/data/*": self.vault_paths,
            "aws secretsmanager.BatchGetSecretValue": -(-self.sm // 20),
            "aws AmazonSSM.GetParameters": -(-self.ssm // 10),
        }

    # --- the backends ------------------------------------------------------------------------------

    def seed(self, backends: Backends, generation: int = 0) -> None:
        """Writes every value (``generation`` changes them all) into Vault, Secrets Manager and SSM."""
        import boto3
        import hvac

        verify = backends.ca_bundle
        vault = hvac.Client(url=backends.vault_address, token=backends.root_token, timeout=10, verify=verify or True)
        for i in range(self.vault_paths):
            vault.secrets.kv.v2.create_or_update_secret(
                path=self.vault_path(i),
                secret={"user": _word(f"u{i}", generation), "password": _word(f"p{i}", generation)},
                mount_point="secret",
            )
        sm = boto3.client("secretsmanager", region_name=REGION, endpoint_url=backends.aws_url, verify=verify)
        ssm = boto3.client("ssm", region_name=REGION, endpoint_url=backends.aws_url, verify=verify)
        for i in range(self.sm):
            name, value = self.sm_name(i), _word(f"s{i}", generation)
            try:
                sm.create_secret(Name=name, SecretString=value)
            except sm.exceptions.ResourceExistsException:  # moto's state is per process, not per server
                sm.put_secret_value(SecretId=name, SecretString=value)
        for i in range(self.ssm):
            ssm.put_parameter(
                Name=self.ssm_name(i), Value=_word(f"m{i}", generation), Type="SecureString", Overwrite=True
            )
        sm.close()
        ssm.close()

    # --- files -------------------------------------------------------------------------------------

    def write_templates(self, folder: Path, *, named: bool = False) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for template in self.layout():
            (folder / f"{template.destination}.j2").write_text(template.source(named=named))

    def config(
        self,
        backends: Backends,
        *,
        folder: Path,
        output_dir: Path,
        tmpfs: bool,
        state_dir: Path | None = None,
        extra: dict[str, Any] | None = None,
        on_change: list[dict[str, Any]] | None = None,
        named: bool = False,
    ) -> Path:
        """Writes ``folder/injector.yaml`` (templates in ``folder/templates``) and returns its path;
        with ``named``, the references are declared under ``secrets:`` and the templates name them."""
        self.write_templates(folder / "templates", named=named)
        raw: dict[str, Any] = {
            "output_dir": str(output_dir),
            "vault": {"address": backends.vault_address, "auth": {"method": "token"}},
            "aws": {"region": REGION, "endpoint_url": backends.aws_url},
            "templates": [
                {
                    "source": f"templates/{t.destination}.j2",
                    "destination": t.destination,
                    **({"on_change": on_change} if on_change else {}),
                }
                for t in self.layout()
            ],
            "health": {"address": False},
        }
        if named:
            raw["secrets"] = {v.var.lower(): v.ref for v in self.values()}
        if not tmpfs:
            raw["allow_non_tmpfs"] = True
        if state_dir is not None:
            raw["state_dir"] = str(state_dir)
        raw.update(extra or {})
        path = folder / "injector.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    def plan(self, backends: Backends, output_dir: Path) -> dict[str, Any]:
        """What ``baseline.py`` reads: where the backends are and what to write where."""
        return {
            "vault": {"address": backends.vault_address, "token": backends.root_token},
            "aws": {"region": REGION, "endpoint_url": backends.aws_url},
            "output_dir": str(output_dir),
            "files": [
                {
                    "path": t.destination,
                    "lines": [[v.var, v.kind, v.name, v.key] for v in t.values],
                }
                for t in self.layout()
            ],
        }

    def write_plan(self, backends: Backends, output_dir: Path, path: Path) -> Path:
        path.write_text(json.dumps(self.plan(backends, output_dir), indent=1))
        return path


def _word(seed: str, generation: int) -> str:
    rng = random.Random(f"{seed}:{generation}")
    return "".join(rng.choices(string.ascii_letters + string.digits, k=24))
