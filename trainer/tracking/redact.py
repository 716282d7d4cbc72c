"""Credentials never leave the process in what a run logs: `Redactor` masks them in params, tags,
uploaded texts (the console log, the spec) and the tracking's console lines.

Masked: the values of environment variables named like a credential (`*_TOKEN`, `*_PASSWORD`,
`*_SECRET`, `*_KEY` of a secret access key, and MLflow's `MLFLOW_TRACKING_USERNAME`), and the
user-info part of any URL (`https://user:pass@host` → `https://***@host`, since error messages
quote request URLs). The spec itself cannot hold credentials (`mlflow.tracking_uri` refuses
user-info), so the spec, the ConfigMap and the checkpoints carry none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

SECRET_SUFFIXES = ("_TOKEN", "_PASSWORD", "_SECRET", "_SECRET_KEY", "_SECRET_ACCESS_KEY")
SECRET_NAMES = ("MLFLOW_TRACKING_USERNAME",)
#: Shorter values are not masked: masking "1" or "ok" everywhere would garble every log.
MIN_SECRET_LENGTH = 4
MASK = "***"
_USERINFO = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return upper in SECRET_NAMES or upper.endswith(SECRET_SUFFIXES)


class Redactor:
    """`redactor(text)`: `text` with credentials masked (see the module docstring)."""

    def __init__(self, environ: Mapping[str, str]):
        values = {
            value
            for name, value in environ.items()
            if is_secret_name(name) and len(value) >= MIN_SECRET_LENGTH
        }
        # Longest first, so a secret containing another is masked whole.
        self.values = sorted(values, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        text = _USERINFO.sub(rf"\g<1>{MASK}@", text)
        for value in self.values:
            text = text.replace(value, MASK)
        return text

    def mapping(self, values: Mapping[str, str]) -> dict[str, str]:
        return {key: self(value) for key, value in values.items()}


def without_userinfo(url: str) -> str:
    """`url` with its user-info removed (`https://user:pass@host/x` → `https://host/x`): for
    links printed and logged, which must work for anyone with access, not carry a login."""
    return _USERINFO.sub(r"\g<1>", url)
