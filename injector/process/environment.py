"""The environment a child process inherits: injector's own credentials and settings never pass."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence

from injector.credentials import AWS_CREDENTIAL_VARIABLES, CONTROL_VARIABLES

__all__ = ["AWS_CREDENTIAL_VARIABLES", "CONTROL_VARIABLES", "child_environment"]

# CONTROL_VARIABLES (``VAULT_TOKEN``, ``INJECTOR_*``) never pass, even when allowed: injector's token
# carries injector's policies, which read every secret of the app and more; grant a token through
# ``env:`` if the app really needs one. AWS_CREDENTIAL_VARIABLES pass only when ``env_allow`` names
# them exactly (a glob such as ``AWS_*`` is not enough), for apps that deliberately share them; the
# key id goes with the secret key: an id without its secret makes AWS SDKs fail with "partial
# credentials" instead of falling back to the pod's role. Both lists live in injector.credentials,
# which the template functions read too.


def child_environment(
    base: Mapping[str, str],
    granted: Mapping[str, str],
    *,
    allow: Sequence[str],
    deny: Sequence[str],
) -> dict[str, str]:
    """Returns the child's environment; pure: the inputs are not changed.

    1. ``base`` (injector's own environment) filtered by ``allow`` (fnmatch globs, case-sensitive;
       empty allows everything), then by ``deny`` (globs; deny wins over allow);
    2. minus the control variables (``CONTROL_VARIABLES`` always, ``AWS_CREDENTIAL_VARIABLES`` unless
       allowed by exact name);
    3. plus ``granted`` (the rendered ``env:`` map), which always wins and is never filtered.
    """

    def matches(name: str, patterns: Sequence[str]) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)

    env: dict[str, str] = {}
    for name, value in base.items():
        if allow and not matches(name, allow):  # 1.
            continue
        if matches(name, deny):
            continue
        if matches(name, CONTROL_VARIABLES):  # 2.
            continue
        if name in AWS_CREDENTIAL_VARIABLES and name not in allow:
            continue
        env[name] = value
    env.update(granted)  # 3.
    return env
