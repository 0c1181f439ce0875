"""Names that become file or directory names: a comparison's name, pools and strategies, an MLflow
experiment (its artifact directory). Letters, digits, spaces, '.', '_', '+' and '-', starting with a
letter or a digit, so that no name can climb out of (`..`) or reach past (`/`) the directory it names
an entry of."""
from __future__ import annotations

import re

from curate.errors import UsageError

SAFE_NAME = re.compile(r"[^\W_](?:[\w .+-]{0,98}[\w.+-])?")
ALLOWED = ("letters, digits, spaces, '.', '_', '+' and '-', starting with a letter or a digit, not ending with a "
           "space, at most 100 characters")


class UnsafeName(UsageError, ValueError):
    """A ValueError, so that a pydantic validator reports it under its field."""


def check_name(name: str, what: str) -> str:
    """`name`, or UnsafeName naming `what` and the characters allowed."""
    if not SAFE_NAME.fullmatch(name):
        raise UnsafeName(f"{what} {name!r} cannot name a file or directory: use only {ALLOWED}")
    return name
