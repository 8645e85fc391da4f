"""Keep API keys and tokens out of everything replaybench writes.

Nothing in a RunResult reads the environment, but a user may paste a token
into a display name, an agent path or an agent option. Every string that goes
into a file name (``results.safe_name``), the store, an export or W&B (names,
config, command line) passes through :func:`redact`, which replaces
the value of any secret-looking environment variable (``*KEY*``, ``*TOKEN*``,
``*SECRET*``, ``*PASSWORD*``, ``*CREDENTIAL*``) with ``[redacted]``.

Example:
    >>> import os
    >>> os.environ["EXAMPLE_API_KEY"] = "abcdefgh12345678"
    >>> redact({"name": "run-abcdefgh12345678"})
    {'name': 'run-[redacted]'}
"""

from __future__ import annotations

import os
import re
from typing import Any

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
MIN_SECRET_LENGTH = 8
"""Shorter values (e.g. ``WANDB_KEY_FORMAT=1``) would redact ordinary text."""
REDACTED = "[redacted]"


def secret_values() -> list[str]:
    """Values of the secret-looking environment variables, longest first."""
    values = {v for k, v in os.environ.items() if SECRET_NAME.search(k) and len(v) >= MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)


def redact(obj: Any, secrets: list[str] | None = None) -> Any:
    """``obj`` with every secret value replaced, recursing into dicts, lists and tuples."""
    secrets = secret_values() if secrets is None else secrets
    if not secrets:
        return obj
    if isinstance(obj, str):
        for s in secrets:
            obj = obj.replace(s, REDACTED)
        return obj
    if isinstance(obj, dict):
        return {redact(k, secrets): redact(v, secrets) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v, secrets) for v in obj)
    return obj
