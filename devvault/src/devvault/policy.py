"""ACL policies: a small HCL/JSON parser, Vault's path-matching priority, and the policy store.

Only ``path "<pattern>" { capabilities = [...] }`` blocks are understood (plus the legacy
``policy = "read|write|deny|sudo"`` form and the JSON equivalent hvac sends for dict policies).
A pattern may end in ``*`` (prefix glob) and use ``+`` for exactly one path segment. When several
patterns match, Vault's priority rules pick one (an exact match first; then the pattern whose
first wildcard comes later, that does not end in ``*``, with fewer ``+``, longer, larger); its
capabilities apply, and ``deny`` beats everything. Patterns repeated across a token's policies
are merged first (capabilities unioned).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from devvault.wire import VaultError

__all__ = ["ACL", "CAPABILITIES", "DEFAULT_POLICY", "Policy", "PolicyStore", "parse_policy"]

CAPABILITIES = frozenset(
    {"create", "read", "update", "patch", "delete", "list", "sudo", "deny", "subscribe"}
)
_LEGACY = {
    "deny": {"deny"},
    "read": {"read", "list"},
    "write": {"create", "read", "update", "delete", "list"},
    "sudo": {"create", "read", "update", "delete", "list", "sudo"},
}
#: What each logical operation needs (any one of the set).
_NEEDS = {
    "read": {"read"},
    "head": {"read"},
    "list": {"list"},
    "update": {"update", "create"},
    "delete": {"delete"},
    "patch": {"patch"},
}
#: Paths that also need ``sudo`` (Vault's root-protected paths), as (prefix, glob).
_SUDO = (
    ("sys/seal", False), ("sys/step-down", False), ("sys/auth/", True), ("sys/raw/", True),
    ("sys/leases/revoke-prefix/", True), ("sys/leases/revoke-force/", True),
    ("sys/rotate", False), ("auth/token/revoke-orphan", False),
)

DEFAULT_POLICY = """\
# Allow tokens to look up, renew and revoke themselves
path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/renew-self" { capabilities = ["update"] }
path "auth/token/revoke-self" { capabilities = ["update"] }
# Allow a token to look up its own capabilities on a path
path "sys/capabilities-self" { capabilities = ["update"] }
# Allow a token to look up and renew the leases it holds
path "sys/leases/lookup" { capabilities = ["update"] }
path "sys/leases/renew" { capabilities = ["update"] }
path "sys/renew" { capabilities = ["update"] }
path "sys/internal/ui/resultant-acl" { capabilities = ["read"] }
# Allow response wrapping and unwrapping, and looking up wrapping tokens
path "sys/wrapping/wrap" { capabilities = ["update"] }
path "sys/wrapping/lookup" { capabilities = ["update"] }
path "sys/wrapping/unwrap" { capabilities = ["update"] }
path "cubbyhole/*" { capabilities = ["create", "read", "update", "delete", "list"] }
"""

_TOKEN = re.compile(
    r'\s*(?:(?P<comment>(?:#|//)[^\n]*|/\*.*?\*/)|(?P<string>"(?:[^"\\]|\\.)*")'
    r"|(?P<punct>[{}\[\]=,])|(?P<word>[A-Za-z_][A-Za-z0-9_\-]*))",
    re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class Policy:
    """A parsed policy: ``rules`` maps a path pattern to its capabilities."""

    name: str
    text: str
    rules: dict[str, frozenset[str]]


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ValueError(f"unexpected {text[pos:pos + 20]!r} at offset {pos}")
        pos = match.end()
        kind = match.lastgroup or ""
        if kind == "comment":
            continue
        value = match.group(kind)
        out.append((kind, json.loads(value) if kind == "string" else value))
    return out


def _parse_hcl(text: str) -> dict[str, set[str]]:
    toks = _tokens(text)
    rules: dict[str, set[str]] = {}
    i = 0

    def expect(kind: str, value: str | None = None) -> str:
        nonlocal i
        if i >= len(toks) or toks[i][0] != kind or (value is not None and toks[i][1] != value):
            got = toks[i][1] if i < len(toks) else "end of text"
            raise ValueError(f"expected {value or kind}, got {got!r}")
        i += 1
        return toks[i - 1][1]

    while i < len(toks):
        expect("word", "path")
        pattern = expect("string")
        expect("punct", "{")
        caps = rules.setdefault(pattern, set())
        while i < len(toks) and toks[i] != ("punct", "}"):
            key = expect("word")
            expect("punct", "=")
            if i < len(toks) and toks[i] == ("punct", "["):
                i += 1
                values: list[str] = []
                while toks[i] != ("punct", "]"):
                    values.append(expect("string"))
                    if toks[i] == ("punct", ","):
                        i += 1
                i += 1
            elif i < len(toks) and toks[i][0] == "punct" and toks[i][1] == "{":
                depth = 0
                while True:  # skip a nested block such as allowed_parameters = {…}
                    depth += {"{": 1, "}": -1}.get(toks[i][1], 0) if toks[i][0] == "punct" else 0
                    i += 1
                    if depth == 0:
                        break
                continue
            else:
                values = [expect("string")]
            if key == "capabilities":
                caps.update(values)
            elif key == "policy":
                caps.update(_LEGACY.get(values[0], set()) or {values[0]})
        expect("punct", "}")
    return rules


def _parse_json(text: str) -> dict[str, set[str]]:
    doc = json.loads(text)
    paths = doc.get("path") if isinstance(doc, dict) else None
    if not isinstance(paths, dict):
        raise ValueError('a JSON policy needs a "path" object')
    rules: dict[str, set[str]] = {}
    for pattern, body in paths.items():
        caps = rules.setdefault(str(pattern), set())
        caps.update(str(cap) for cap in (body or {}).get("capabilities", []))
        legacy = (body or {}).get("policy")
        if legacy:
            caps.update(_LEGACY.get(str(legacy), {str(legacy)}))
    return rules


def parse_policy(name: str, text: str) -> Policy:
    """Parses HCL or JSON policy text; raises a 400 VaultError saying what is wrong."""
    try:
        rules = _parse_json(text) if text.lstrip().startswith("{") else _parse_hcl(text)
    except (ValueError, IndexError, AttributeError) as exc:
        raise VaultError(400, f"failed to parse policy: {exc}") from exc
    for pattern, caps in rules.items():
        unknown = caps - CAPABILITIES
        if unknown:
            raise VaultError(
                400, f'failed to parse policy: path "{pattern}": invalid capability '
                     f'"{sorted(unknown)[0]}"'
            )
    return Policy(name=name, text=text, rules={k: frozenset(v) for k, v in rules.items()})


def _regex(pattern: str) -> re.Pattern[str]:
    glob = pattern.endswith("*")
    base = pattern[:-1] if glob else pattern
    parts = [r"[^/]+" if seg == "+" else re.escape(seg) for seg in base.split("/")]
    return re.compile("/".join(parts) + (".*" if glob else ""), re.DOTALL)


def _priority(pattern: str) -> tuple[int, bool, int, int, str]:
    wild = [pos for pos in (pattern.find("+"), pattern.find("*")) if pos >= 0]
    first = min(wild) if wild else len(pattern) + 1
    return (first, not pattern.endswith("*"), -pattern.split("/").count("+"), len(pattern),
            pattern)


class ACL:
    """The merged rules of a token's policies; ``root`` allows everything."""

    def __init__(self, policies: list[Policy]) -> None:
        self.root = any(policy.name == "root" for policy in policies)
        merged: dict[str, set[str]] = {}
        for policy in policies:
            for pattern, caps in policy.rules.items():
                merged.setdefault(pattern, set()).update(caps)
        self._rules = [(pattern, _regex(pattern), frozenset(caps))
                       for pattern, caps in merged.items()]

    def capabilities(self, path: str) -> frozenset[str]:
        """Returns the capabilities on ``path`` (``{"root"}`` for root, ``{"deny"}`` for none)."""
        if self.root:
            return frozenset({"root"})
        best: tuple[tuple[int, bool, int, int, str], frozenset[str]] | None = None
        for pattern, regex, caps in self._rules:
            if regex.fullmatch(path) and (best is None or _priority(pattern) > best[0]):
                best = (_priority(pattern), caps)
        if best is None or "deny" in best[1] or not best[1]:
            return frozenset({"deny"})
        return best[1]

    def allows(self, path: str, op: str) -> bool:
        """True when ``op`` on ``path`` is allowed (list paths carry their trailing slash)."""
        caps = self.capabilities(path)
        if "root" in caps:
            return True
        if not caps & _NEEDS.get(op, {op}):
            return False
        sudo = any(path.startswith(prefix) if glob else path == prefix for prefix, glob in _SUDO)
        return not sudo or "sudo" in caps

    def touches(self, prefix: str) -> bool:
        """True when some non-deny rule could match a path under ``prefix`` (mount preflight)."""
        if self.root:
            return True
        for pattern, _, caps in self._rules:
            if "deny" in caps or not caps:
                continue
            literal = re.split(r"[+*]", pattern, maxsplit=1)[0]
            if literal.startswith(prefix) or prefix.startswith(literal):
                return True
        return False


class PolicyStore:
    """Named ACL policies; ``root`` and ``default`` always exist."""

    def __init__(self) -> None:
        self._policies: dict[str, Policy] = {
            "root": Policy(name="root", text="", rules={}),
            "default": parse_policy("default", DEFAULT_POLICY),
        }

    def names(self) -> list[str]:
        return sorted(self._policies)

    def get(self, name: str) -> Policy | None:
        return self._policies.get(name.lower())

    def put(self, name: str, text: str) -> None:
        name = name.lower()
        if name == "root":
            raise VaultError(400, 'cannot update "root" policy')
        if not text.strip():
            raise VaultError(400, "'policy' parameter not supplied or empty")
        self._policies[name] = parse_policy(name, text)

    def delete(self, name: str) -> None:
        name = name.lower()
        if name in ("root", "default"):
            raise VaultError(400, f'cannot delete "{name}" policy')
        self._policies.pop(name, None)

    def acl(self, names: list[str]) -> ACL:
        return ACL([policy for name in names if (policy := self.get(name)) is not None])
