"""Names that become file or directory names: a comparison's name, pools and strategies, an MLflow
experiment (its artifact directory). Letters, digits, '.', '_', '+' and '-', starting with a letter or a
digit, so that no name can climb out of (`..`) or reach past (`/`) the directory it names an entry of."""
from __future__ import annotations

import re

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
ALLOWED = "letters, digits, '.', '_', '+' and '-', starting with a letter or a digit, at most 100 characters"


def check_name(name: str, what: str) -> str:
    """`name`, or ValueError naming `what` and the characters allowed."""
    if not SAFE_NAME.fullmatch(name):
        raise ValueError(f"{what} {name!r} cannot name a file or directory: use only {ALLOWED}")
    return name
