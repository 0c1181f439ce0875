"""DVC adapter: the project is a DVC repo; `data.dvc` tracks the raw pool, `dvc.yaml` the stages.

We drive the `dvc` command line (the stable interface) with analytics off. After a flow run,
`commit` records every stage's deps/params/outs in `dvc.lock` and caches the outs, so `dvc status`
is clean and `dvc repro` is a no-op; `push` copies the cache to the configured remote.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path


class DvcError(RuntimeError):
    pass


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["DVC_NO_ANALYTICS"] = "1"
    env.setdefault("CI", "true")  # no update check either
    # the `curate` console script of this interpreter must be on PATH for `dvc repro`
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def dvc(project: Path | str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=project, env=_env(), capture_output=True, text=True
    )
    if check and proc.returncode != 0:
        raise DvcError(f"`dvc {' '.join(args)}` failed in {project}:\n{proc.stdout}{proc.stderr}")
    return proc


def is_repo(project: Path | str) -> bool:
    return (Path(project) / ".dvc").is_dir()


# The DVC cache holds its own copy of every versioned byte (a copy-on-write reflink where the filesystem
# has them, else a plain copy): never a hard link of the workspace, so one bad write to a store entry or
# to a user's raw file cannot also damage the version DVC keeps of it, and `dvc add` never turns a
# user's file into a read-only link (docs/architecture.md, "Integrity": the disk this costs).
CACHE_TYPE = "reflink,copy"


def ensure_repo(project: Path | str, remote: str) -> None:
    """Make `project` a DVC repo (inside git when there is one) with analytics off, hard-linked cache
    files and a local remote."""
    project = Path(project)
    if not is_repo(project):
        args = ["init"] if (project / ".git").exists() else ["init", "--no-scm"]
        dvc(project, *args)
        dvc(project, "config", "core.analytics", "false")
    if dvc(project, "config", "cache.type", check=False).stdout.strip() != CACHE_TYPE:
        dvc(project, "config", "cache.type", CACHE_TYPE)
    remote_path = (project / remote).resolve()
    remote_path.mkdir(parents=True, exist_ok=True)
    listed = dvc(project, "remote", "list").stdout
    if "local" not in listed.split():
        # a relative url given on the command line is taken relative to the cwd (the project)
        dvc(project, "remote", "add", "-d", "local", os.path.relpath(remote_path, project))


def add_raw(project: Path | str, raw_dir: str = "data/raw", dvc_file: str = "data.dvc") -> None:
    """Track the raw pool directory in the top-level `data.dvc` (a new version when its content changed).

    `dvc add` names its file after the target (`data/raw.dvc`); we keep one `data.dvc` at the top,
    whose out path is relative to it.
    """
    project = Path(project)
    target = project / dvc_file
    if target.exists():
        dvc(project, "commit", "--force", "--quiet", "--no-relink", dvc_file)
        return
    dvc(project, "add", "--quiet", "--no-relink", raw_dir)
    raw = Path(raw_dir)
    made = project / raw.parent / f"{raw.name}.dvc"
    text = made.read_text().replace(f"path: {raw.name}\n", f"path: {raw.as_posix()}\n")
    target.write_text(text)
    made.unlink()


def unshare_cache(project: Path | str) -> int:
    """Give every cache object that shares its inode with another file (a hard link made by an older
    version of curate, or by DVC's hardlink cache type) a copy of its own; returns how many."""
    root = cache_dir(project) / "files"
    n = 0
    for obj in (p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []:
        if obj.name.startswith(".tmp-unshare-"):  # a killed unshare's copy: the object itself is untouched
            obj.unlink()
            continue
        st = obj.stat()
        if st.st_nlink > 1:
            tmp = obj.with_name(f".tmp-unshare-{obj.name}")
            shutil.copyfile(obj, tmp)
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            os.replace(tmp, obj)
            n += 1
    return n


def commit(project: Path | str) -> None:
    """Cache every out and record it in dvc.lock; the workspace files stay as they are (hard links of the
    store entries: DVC's relink would replace them by copies of its cache)."""
    dvc(project, "commit", "--force", "--quiet", "--no-relink")


def push(project: Path | str) -> str:
    return dvc(project, "push", "--quiet").stdout


def cache_dir(project: Path | str) -> Path:
    """The DVC cache directory of the project (`.dvc/cache` unless configured elsewhere)."""
    project = Path(project)
    if not is_repo(project):
        return project.resolve() / ".dvc" / "cache"
    return Path(dvc(project, "cache", "dir").stdout.strip())


def local_remotes(project: Path | str) -> list[Path]:
    """The directories of the project's remotes that are local paths (a cloud remote is not listed)."""
    out = []
    for line in dvc(project, "config", "--list", "--show-origin").stdout.splitlines():
        origin, _, setting = line.partition("\t")  # `.dvc/config<TAB>remote.local.url=../.curate/dvc-remote`
        key, _, url = setting.partition("=")
        if key.startswith("remote.") and key.endswith(".url") and url and "://" not in url:
            out.append(((Path(project) / origin).parent / url).resolve())  # relative to its config file
    return out


def status(project: Path | str) -> str:
    """`dvc status` output; 'Data and pipelines are up to date.' when clean."""
    return dvc(project, "status").stdout.strip()


def is_clean(project: Path | str) -> bool:
    return "up to date" in status(project)

