"""ACL policies: a small HCL/JSON parser, Vault's path-matching priority, and the policy store.

``path "<pattern>" { ... }`` blocks are understood, in HCL or in the JSON hvac sends for dict
policies, with ``capabilities``, the legacy ``policy = "read|write|deny|sudo"``, ``comment`` and
the parameter constraints ``required_parameters``, ``allowed_parameters`` and
``denied_parameters``, enforced as Vault's ``ACL.AllowOperation`` does (below). Vault's other
keys (``min_wrapping_ttl``, ``max_wrapping_ttl``, ``mfa_methods``, ``control_group``) and JSON
pointer parameter keys are refused with a 400 that says this server does not enforce them, rather
than accepted and ignored; any other key is a 400 as in Vault.
A pattern may end in ``*`` (prefix glob) and use ``+`` for exactly one path segment. When several
patterns match, Vault's priority rules pick one (an exact match first; then the pattern whose
first wildcard comes later, that does not end in ``*``, with fewer ``+``, longer, larger); its
capabilities apply, and ``deny`` beats everything. Patterns repeated across a token's policies
are merged first (capabilities unioned; parameter lists as Vault's ACL merges them: a key allowed or
denied with any value in one policy is so in the merge, else the value lists are joined; required
parameters unioned).

Parameter constraints apply to read, create/update and patch requests, to the request's data (the
query parameters overlaid with the body): every required name, lowercased, must be among the
keys as sent; a request with no data is then allowed; ``denied_parameters`` ``"*"`` denies any data, and
a denied key denies when its value is in the list (an empty list: any value); with
``allowed_parameters`` set (other than ``"*"`` alone), every key must be allowed (or ``"*"`` be
there) and, when listed, its value in the list. Sent keys are lowercased before they are looked up
there. A listed string may start or end with ``*`` (a glob); other values match when deeply equal,
but a number sent in a body never does (Vault reads it as a JSON number string).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
    r"|(?P<number>-?[0-9]+(?:\.[0-9]+)?)|(?P<punct>[{}\[\]=,])|(?P<word>[A-Za-z_][A-Za-z0-9_\-]*))",
    re.DOTALL,
)


#: Keys of a path block Vault knows and this server does not enforce: refused, not ignored.
_UNENFORCED = ("min_wrapping_ttl", "max_wrapping_ttl", "mfa_methods", "control_group")
_PARAMETER_KEYS = ("allowed_parameters", "denied_parameters", "required_parameters")


@dataclass(frozen=True, slots=True)
class Params:
    """A path's parameter constraints (None: that kind is not set)."""

    allowed: Mapping[str, tuple[Any, ...]] | None = None
    denied: Mapping[str, tuple[Any, ...]] | None = None
    required: tuple[str, ...] = ()

    def merged(self, other: Params) -> Params:
        """Vault's merge of the same path's constraints from two policies."""
        return Params(
            allowed=_merge_map(self.allowed, other.allowed),
            denied=_merge_map(self.denied, other.denied),
            required=tuple(dict.fromkeys((*self.required, *other.required))),
        )

    def allow(self, data: Mapping[str, Any]) -> bool:
        """Whether a request with ``data`` passes these constraints."""
        # Vault looks a required name up lowercased among the request's keys as sent, and a sent
        # key up lowercased among the allowed and denied ones.
        if any(name.lower() not in data for name in self.required):
            return False
        given = {str(key).lower(): value for key, value in data.items()}
        if not given:
            return True
        if self.denied:
            if "*" in self.denied:
                return False
            for key, value in given.items():
                if key in self.denied and _value_in(value, self.denied[key]):
                    return False
        if not self.allowed or set(self.allowed) == {"*"}:
            return True
        allowed_all = "*" in self.allowed
        for key, value in given.items():
            if key not in self.allowed:
                if not allowed_all:
                    return False
            elif not _value_in(value, self.allowed[key]):
                return False
        return True


def _merge_map(
    a: Mapping[str, tuple[Any, ...]] | None, b: Mapping[str, tuple[Any, ...]] | None
) -> Mapping[str, tuple[Any, ...]] | None:
    if a is None or b is None:
        return b if a is None else a
    out = dict(a)
    for key, values in b.items():
        if key in out:
            out[key] = () if not out[key] or not values else (*out[key], *values)
        else:
            out[key] = values
    return out


def _value_in(value: Any, listed: tuple[Any, ...]) -> bool:
    """Vault's ``valueInParameterList``: an empty list holds everything; strings match as globs;
    anything else must be deeply equal."""
    if not listed:
        return True
    for item in listed:
        if isinstance(item, str) and isinstance(value, str):
            if _glob_match(item, value):
                return True
        elif _deep_equal(item, value):
            return True
    return False


def _deep_equal(item: Any, value: Any) -> bool:
    """``reflect.DeepEqual`` of a policy value and a request value as Vault holds them: a number
    in a request body is a ``json.Number`` (a string type) there, so it never equals a policy's
    number; booleans, null, strings, lists and maps compare as they are."""
    if isinstance(item, bool) or isinstance(value, bool) or item is None or value is None:
        return item is value
    if isinstance(item, int | float) or isinstance(value, int | float):
        return False
    if isinstance(item, list) and isinstance(value, list):
        return len(item) == len(value) and all(map(_deep_equal, item, value))
    if isinstance(item, dict) and isinstance(value, dict):
        return item.keys() == value.keys() and all(_deep_equal(item[k], value[k]) for k in item)
    return isinstance(item, str) and isinstance(value, str) and item == value


def _glob_match(item: str, value: str) -> bool:
    if len(item) > 1 and item.startswith("*") and item.endswith("*"):
        return item[1:-1] in value
    if item.startswith("*"):
        return value.endswith(item[1:])
    if item.endswith("*"):
        return value.startswith(item[:-1])
    return item == value


@dataclass(frozen=True, slots=True)
class Policy:
    """A parsed policy: ``rules`` maps a path pattern to its capabilities, ``params`` to its
    parameter constraints (patterns without any are not in it)."""

    name: str
    text: str
    rules: dict[str, frozenset[str]]
    params: dict[str, Params] = field(default_factory=dict)


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
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
        out.append((kind, json.loads(value) if kind in ("string", "number") else value))
    return out


class _Reader:
    """HCL tokens read one value at a time."""

    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def more(self, closing: str | None = None) -> bool:
        return self.i < len(self.toks) and (closing is None or self.toks[self.i] != ("punct", closing))

    def skip(self, punct: str) -> None:
        if self.more() and self.toks[self.i] == ("punct", punct):
            self.i += 1

    def expect(self, kind: str, value: str | None = None) -> Any:
        toks, i = self.toks, self.i
        if i >= len(toks) or toks[i][0] != kind or (value is not None and toks[i][1] != value):
            got = toks[i][1] if i < len(toks) else "end of text"
            raise ValueError(f"expected {value or kind}, got {got!r}")
        self.i += 1
        return toks[i][1]

    def value(self) -> Any:
        if not self.more():
            raise ValueError("expected a value, got end of text")
        kind, token = self.toks[self.i]
        self.i += 1
        if (kind, token) == ("punct", "["):
            items = []
            while self.more("]"):
                items.append(self.value())
                self.skip(",")
            self.expect("punct", "]")
            return items
        if (kind, token) == ("punct", "{"):
            members: dict[str, Any] = {}
            while self.more("}"):
                name = self.value() if self.toks[self.i][0] == "string" else self.expect("word")
                self.expect("punct", "=")
                members[str(name)] = self.value()
                self.skip(",")
            self.expect("punct", "}")
            return members
        if kind in ("string", "number") or (kind == "word" and token in ("true", "false")):
            return token == "true" if kind == "word" else token
        raise ValueError(f"expected a value, got {token!r}")


def _parse_hcl(text: str) -> tuple[dict[str, set[str]], dict[str, dict[str, Any]]]:
    """``path`` blocks: the capabilities per pattern, and each pattern's other keys as values."""
    reader = _Reader(text)
    rules: dict[str, set[str]] = {}
    extra: dict[str, dict[str, Any]] = {}
    while reader.more():
        reader.expect("word", "path")
        pattern = reader.expect("string")
        reader.expect("punct", "{")
        caps = rules.setdefault(pattern, set())
        while reader.more("}"):
            key = reader.expect("word")
            reader.expect("punct", "=")
            given = reader.value()
            if key == "capabilities":
                caps.update(str(cap) for cap in (given if isinstance(given, list) else [given]))
            elif key == "policy":
                caps.update(_LEGACY.get(str(given), set()) or {str(given)})
            else:
                extra.setdefault(pattern, {})[key] = given
        reader.expect("punct", "}")
    return rules, extra


def _parse_json(text: str) -> tuple[dict[str, set[str]], dict[str, dict[str, Any]]]:
    doc = json.loads(text)
    paths = doc.get("path") if isinstance(doc, dict) else None
    if not isinstance(paths, dict):
        raise ValueError('a JSON policy needs a "path" object')
    rules: dict[str, set[str]] = {}
    extra: dict[str, dict[str, Any]] = {}
    for pattern, body in paths.items():
        caps = rules.setdefault(str(pattern), set())
        body = body or {}
        caps.update(str(cap) for cap in body.get("capabilities", []))
        legacy = body.get("policy")
        if legacy:
            caps.update(_LEGACY.get(str(legacy), {str(legacy)}))
        others = {key: val for key, val in body.items() if key not in ("capabilities", "policy")}
        if others:
            extra[str(pattern)] = others
    return rules, extra


def _params(pattern: str, keys: Mapping[str, Any]) -> Params | None:
    """The parameter constraints of one path block; a 400's words for anything else."""
    for key in keys:
        if key in _UNENFORCED:
            raise ValueError(
                f'path "{pattern}": {key} is not enforced by this dev server '
                "(Vault would enforce it; accepting it unenforced would allow what Vault refuses)"
            )
        if key not in (*_PARAMETER_KEYS, "comment"):
            raise ValueError(f'path "{pattern}": invalid key "{key}"')

    def constraints(kind: str) -> dict[str, tuple[Any, ...]] | None:
        given = keys.get(kind)
        if given is None:
            return None
        if not isinstance(given, dict):
            raise ValueError(f'path "{pattern}": {kind} must be a map of parameter names to lists')
        out = {}
        for name, listed in given.items():
            if name.startswith("/"):
                raise ValueError(f'path "{pattern}": {kind}: parameter key "{name}": JSON pointer keys '
                                 "are not enforced by this dev server")
            if "*" in name and name != "*":
                raise ValueError(f'path "{pattern}": {kind}: parameter key "{name}" cannot contain '
                                 "non-tail wildcards")
            out[name.lower()] = tuple(listed if isinstance(listed, list) else [listed])
        return out

    required = keys.get("required_parameters", [])
    if not isinstance(required, list) or not all(isinstance(name, str) for name in required):
        raise ValueError(f'path "{pattern}": required_parameters must be a list of names')
    params = Params(constraints("allowed_parameters"), constraints("denied_parameters"), tuple(required))
    return None if params == Params() else params


def parse_policy(name: str, text: str) -> Policy:
    """Parses HCL or JSON policy text; raises a 400 VaultError saying what is wrong."""
    try:
        rules, extra = _parse_json(text) if text.lstrip().startswith("{") else _parse_hcl(text)
        params = {pattern: p for pattern, keys in extra.items() if (p := _params(pattern, keys))}
    except (ValueError, IndexError, AttributeError, TypeError) as exc:
        raise VaultError(400, f"failed to parse policy: {exc}") from exc
    for pattern, caps in rules.items():
        unknown = caps - CAPABILITIES
        if unknown:
            raise VaultError(
                400, f'failed to parse policy: path "{pattern}": invalid capability '
                     f'"{sorted(unknown)[0]}"'
            )
    return Policy(name=name, text=text, rules={k: frozenset(v) for k, v in rules.items()}, params=params)


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
        params: dict[str, Params] = {}
        for policy in policies:
            for pattern, caps in policy.rules.items():
                merged.setdefault(pattern, set()).update(caps)
            for pattern, given in policy.params.items():
                params[pattern] = params[pattern].merged(given) if pattern in params else given
        self._rules = [(pattern, _regex(pattern), frozenset(caps), params.get(pattern))
                       for pattern, caps in merged.items()]

    def _best(self, path: str) -> tuple[frozenset[str], Params | None]:
        best: tuple[tuple[int, bool, int, int, str], frozenset[str], Params | None] | None = None
        for pattern, regex, caps, params in self._rules:
            if regex.fullmatch(path) and (best is None or _priority(pattern) > best[0]):
                best = (_priority(pattern), caps, params)
        if best is None or "deny" in best[1] or not best[1]:
            return frozenset({"deny"}), None
        return best[1], best[2]

    def capabilities(self, path: str) -> frozenset[str]:
        """Returns the capabilities on ``path`` (``{"root"}`` for root, ``{"deny"}`` for none)."""
        if self.root:
            return frozenset({"root"})
        return self._best(path)[0]

    def allows(self, path: str, op: str, data: Mapping[str, Any] | None = None) -> bool:
        """True when ``op`` on ``path`` with the request's ``data`` is allowed (list paths carry
        their trailing slash)."""
        if self.root:
            return True
        caps, params = self._best(path)
        if not caps & _NEEDS.get(op, {op}):
            return False
        sudo = any(path.startswith(prefix) if glob else path == prefix for prefix, glob in _SUDO)
        if sudo and "sudo" not in caps:
            return False
        if params is not None and op in ("read", "update", "patch"):
            return params.allow(data or {})
        return True

    def touches(self, prefix: str) -> bool:
        """True when some non-deny rule could match a path under ``prefix`` (mount preflight)."""
        if self.root:
            return True
        for pattern, _, caps, _ in self._rules:
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
