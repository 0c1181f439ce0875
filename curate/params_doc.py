"""The parameter reference of docs/parameters.md, generated from curate/config.py: every key with its default
and the comment beside its field (a unit test fails when the checked-in page differs).

    python -m curate.params_doc --write      # rewrite the generated part of docs/parameters.md
"""
from __future__ import annotations

import inspect
import io
import json
import sys
import tokenize
from pathlib import Path

from pydantic import BaseModel

from curate import config
from curate.config import ONLINE_POLICIES, Params

PAGE = Path(__file__).resolve().parent.parent / "docs" / "parameters.md"
BEGIN = "<!-- generated from curate/config.py by `python -m curate.params_doc --write`: edit that file, not this part -->"
END = "<!-- end of the generated part -->"


def _comments() -> dict[tuple[str, str], str]:
    """(class name, field name) -> the comment on the field's line in curate/config.py."""
    source = inspect.getsource(config)
    lines = source.splitlines()
    comments = {tok.start[0]: tok.string.lstrip("# ").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    out, owner = {}, None
    for number, line in enumerate(lines, 1):
        if line.startswith("class "):
            owner = line.split()[1].split("(")[0].rstrip(":")
        elif owner and line.startswith("    ") and not line.startswith("     ") and ":" in line and number in comments:
            name = line.strip().split(":")[0]
            if name.isidentifier():
                out[(owner, name)] = comments[number]
    return out


def _rows(model: BaseModel, prefix: str, notes: dict, scope: str = "") -> list[tuple[str, str, str]]:
    rows = []
    for name, field in type(model).model_fields.items():
        value, path = getattr(model, name), f"{prefix}{name}"
        if isinstance(value, BaseModel) and not (name == "online" and prefix == "training."):
            rows += _rows(value, f"{path}.", notes, scope)
        elif name == "online" and prefix == "training.":
            for policy, cls in ONLINE_POLICIES.items():
                rows += _rows(cls(), f"{path}.", notes, f" (policy {policy})")
        else:
            note = notes.get((type(model).__name__, name), "")
            rows.append((f"`{path}`{scope}", f"`{json.dumps(field.default if value is None else value)}`", note))
    return rows


def render() -> str:
    """The generated part: one table per section of Params, in file order."""
    notes, out = _comments(), [BEGIN]
    defaults = Params()
    for section in type(defaults).model_fields:
        out += ["", f"### `{section}`", "", "| key | default | note |", "|---|---|---|"]
        out += [f"| {key} | {default} | {note.replace('|', '/')} |"
                for key, default, note in _rows(getattr(defaults, section), f"{section}.", notes)]
    return "\n".join(out + ["", END])


def page_with(generated: str, text: str) -> str:
    """`text` with its generated part replaced by `generated`."""
    head, _, rest = text.partition(BEGIN)
    return head + generated + rest.partition(END)[2]


if __name__ == "__main__":
    current = PAGE.read_text()
    updated = page_with(render(), current)
    if "--write" in sys.argv:
        PAGE.write_text(updated)
    else:
        sys.exit(0 if updated == current else 1)
