"""Provider secrets from the environment: ``NAME`` itself, or ``NAME_FILE`` naming a file that holds
it (Docker and Kubernetes secrets). Secrets are never logged; errors name the variable, not the value."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from rating.errors import InvalidValue


def provider_secret(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The secret ``name`` from ``NAME`` or the file ``NAME_FILE`` (trailing newline dropped);
    None when neither is set. Both set is refused, so a stale file cannot shadow a rotated value."""
    env = os.environ if environ is None else environ
    value, path = env.get(name), env.get(f"{name}_FILE")
    if value and path:
        raise InvalidValue(name, f"set {name} or {name}_FILE, not both")
    if path:
        try:
            secret = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as error:
            raise InvalidValue(f"{name}_FILE", f"cannot read {path}: {error.strerror}") from None
        if not secret:
            raise InvalidValue(f"{name}_FILE", f"{path} is empty")
        return secret
    return value or None
