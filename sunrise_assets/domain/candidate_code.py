"""A candidate made of sunalgo *code*: a snapshot of a ``sunalgo/`` package, and the process that runs it.

A code candidate freezes the ``sunalgo/`` directory of a git ref (``git archive``, no checkout) or of
a working tree when it is registered:

    candidates/<name>/code/sunalgo.tar          the snapshot (deterministic tar), in the bucket
    $SUNRISE_WORKDIR/candidates/<name>/code/<tree>/sunalgo/   extracted where its run executes

Its identity is the content hash of the package's files (``tree_sha256``: the same files give the
same hash whether they come from a ref or a tree), plus the ref and commit for a git ref. The
candidate's gold is computed in a child process whose ``sys.path`` starts at the extracted
directory, so ``import sunalgo`` there is the candidate's package while the rest of the platform is
production's; the child reports ``sunalgo.__file__`` so the run can prove which package it used.
No Dagster here: the snapshot, the hash, the extraction and the child's command line.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

PACKAGE = "sunalgo"
WORKER_MODULE = "sunrise_assets.lib.candidate_worker"
_SKIPPED_DIRS = {"__pycache__"}
_SKIPPED_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class CodeSnapshot:
    """A frozen sunalgo package: its files (relative POSIX path -> bytes) and where they came from."""

    files: dict[str, bytes]
    identity: dict[str, Any]

    @property
    def tree_sha256(self) -> str:
        return self.identity["tree_sha256"]


def tree_hash(files: dict[str, bytes]) -> str:
    """SHA-256 over every file's path and content hash, in path order (independent of origin and mtimes)."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(f"{path}\0{hashlib.sha256(files[path]).hexdigest()}\n".encode())
    return digest.hexdigest()


def _kept(rel: PurePosixPath) -> bool:
    return (
        rel.parts[0] == PACKAGE
        and not _SKIPPED_DIRS & set(rel.parts)
        and not rel.name.endswith(_SKIPPED_SUFFIXES)
        and ".." not in rel.parts
    )


def _version_of(files: dict[str, bytes]) -> str | None:
    """``__version__`` as the package's __init__.py states it (read, not imported)."""
    for line in files.get(f"{PACKAGE}/__init__.py", b"").decode(errors="replace").splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    return None


def _snapshot(files: dict[str, bytes], identity: dict[str, Any]) -> CodeSnapshot:
    if f"{PACKAGE}/__init__.py" not in files:
        raise ValueError(f"{identity.get('source')}: no {PACKAGE}/__init__.py (not a sunalgo package)")
    return CodeSnapshot(
        files, {**identity, "tree_sha256": tree_hash(files), "sunalgo_version": _version_of(files), "files": len(files)}
    )


def snapshot_tree(root: Path) -> CodeSnapshot:
    """The ``sunalgo/`` package of a working tree (or any directory holding one), as it is now."""
    root = Path(root).expanduser().resolve()
    package = root / PACKAGE
    if not package.is_dir():
        raise ValueError(f"{root}: no {PACKAGE}/ directory in it")
    files = {}
    for path in sorted(package.rglob("*")):
        rel = PurePosixPath(path.relative_to(root).as_posix())
        if path.is_file() and not path.is_symlink() and _kept(rel):
            files[str(rel)] = path.read_bytes()
    return _snapshot(files, {"kind": "tree", "source": str(root)})


def _git(repo: Path, *args: str) -> bytes:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)
    if proc.returncode != 0:
        raise ValueError(f"git {' '.join(args)} in {repo}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def snapshot_git_ref(repo: Path, ref: str) -> CodeSnapshot:
    """The ``sunalgo/`` package at a git ref of ``repo``, by ``git archive`` (the work tree is not touched)."""
    repo = Path(repo).expanduser().resolve()
    if ref.startswith("-"):
        raise ValueError(f"{ref!r} is not a git ref")
    commit = _git(repo, "rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}").decode().strip()
    archive = _git(repo, "archive", "--format=tar", commit, "--", PACKAGE)
    files = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if member.isfile() and _kept(PurePosixPath(member.name)):
                files[member.name] = tar.extractfile(member).read()
    return _snapshot(files, {"kind": "git", "source": str(repo), "ref": ref, "commit": commit})


def to_tar(files: dict[str, bytes]) -> bytes:
    """A deterministic tar of the files (sorted, no times or owners): the same files, the same bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(files):
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(files[path]), 0o644, 0
            tar.addfile(info, io.BytesIO(files[path]))
    return buffer.getvalue()


def from_tar(data: bytes) -> dict[str, bytes]:
    files = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            rel = PurePosixPath(member.name)
            if not member.isfile() or rel.is_absolute() or not _kept(rel):
                raise ValueError(f"unexpected entry {member.name!r} in a sunalgo snapshot")
            files[member.name] = tar.extractfile(member).read()
    return files


def extract(data: bytes, directory: Path, expected_tree: str) -> Path:
    """The snapshot extracted in ``directory`` (once: a finished extraction is marked and reused);
    refuses a snapshot whose content does not hash to the candidate's recorded tree."""
    marker = directory / ".tree_sha256"
    if marker.exists() and marker.read_text().strip() == expected_tree:
        return directory
    files = from_tar(data)
    if tree_hash(files) != expected_tree:
        raise ValueError(f"the stored sunalgo snapshot does not hash to {expected_tree[:12]} (corrupt object)")
    for rel, content in files.items():
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    marker.write_text(expected_tree + "\n")
    return directory


def describe(identity: dict[str, Any] | None) -> str:
    """One line for a person: which sunalgo a candidate runs."""
    if not identity:
        return "production sunalgo"
    tree = identity["tree_sha256"][:12]
    version = identity.get("sunalgo_version")
    if identity["kind"] == "git":
        return f"git {identity['ref']} @ {identity['commit'][:10]} (sunalgo {version}, tree {tree})"
    return f"tree {identity['source']} (sunalgo {version}, tree {tree})"


def worker_command(code_dir: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    """The child's command line and environment: ``sys.path`` starts at ``code_dir`` (PYTHONPATH, and
    the working directory that ``-m`` puts first), so ``import sunalgo`` finds the candidate's package
    before production's; every other package comes from this installation."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(code_dir), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("PYTHONSAFEPATH", None)  # -m must still put the working directory (code_dir) first
    return [sys.executable, "-m", WORKER_MODULE, *args], env
