"""DVC's content-addressed objects, read directly: where an object lives, which objects a `dvc.lock` or
`.dvc` file names, and whether an object still holds the bytes its name (their md5) says.

A DVC 3 cache or local remote keeps each file as `files/md5/<first 2 hex>/<other 30 hex>`; a tracked
directory is a `.dir` object (a JSON listing of relative paths and md5s) whose own md5 is its name.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

HASH = re.compile(r"^[0-9a-f]{32}(\.dir)?$")


def object_path(root: Path, name: str) -> Path:
    """Where object `name` (an md5, `.dir` suffix included for a listing) lives under a cache or remote."""
    return Path(root) / "files" / "md5" / name[:2] / name[2:]


def object_md5(name: str) -> str:
    return name.removesuffix(".dir")


def named_hashes(doc) -> tuple[set[str], set[str]]:
    """(hashes of outs, hashes of deps) named anywhere in a parsed dvc.lock / .dvc file."""
    outs, deps = set(), set()

    def walk(node, kind: str) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("md5"), str):
                (outs if kind == "outs" else deps).add(node["md5"])
            for key, value in node.items():
                walk(value, key if key in ("outs", "deps") else kind)
        elif isinstance(node, list):
            for value in node:
                walk(value, kind)

    walk(doc, "")
    return outs, deps


def listing(name: str, roots: list[Path]) -> list[dict] | None:
    """The entries ({"relpath", "md5"}) a `.dir` object lists, from whichever of `roots` holds it."""
    for root in roots:
        f = object_path(root, name)
        if f.is_file():
            return json.loads(f.read_text())
    return None


def out_files(doc, roots: list[Path]) -> dict[str, str]:
    """Every object an out of a parsed dvc.lock / .dvc file names -> the out path and relpath it is
    (`data/x` for a file out, `data/x/sub/f` inside a directory out; the listing itself as `data/x/`)."""
    found: dict[str, str] = {}

    def walk(node) -> None:
        if isinstance(node, dict):
            for out in node.get("outs") or []:
                if isinstance(out, dict) and isinstance(out.get("md5"), str):
                    found[out["md5"]] = out.get("path", "?") + ("/" if out["md5"].endswith(".dir") else "")
                    for entry in (listing(out["md5"], roots) or []) if out["md5"].endswith(".dir") else []:
                        found.setdefault(entry["md5"], f"{out.get('path', '?')}/{entry['relpath']}")
            for value in node.values():
                if isinstance(value, (dict, list)):
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    return found
