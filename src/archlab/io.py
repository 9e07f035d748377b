"""Atomic file writes: temp file in the same directory, fsync, rename, fsync the directory.

A reader (or a resumed run) sees either the old file or the complete new one, never a torn
write, even if the process is killed with SIGKILL in the middle.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it; put it back at once
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and durably.

    The file gets the mode a plain ``open(path, "w")`` would give (0666 minus the umask), not the
    0600 of the temp file it is renamed from, so a colleague can read a shared run.
    """
    with atomic_writer(path) as fh:
        fh.write(data)
    return Path(path)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file handle whose content appears at ``path`` atomically when the block ends.

    For files too large to build in memory first (a token cache written chunk by chunk): the
    bytes go to a temp file in the same directory, which is fsynced and renamed over ``path``
    only if the block finishes; on an exception (or a kill) ``path`` keeps its old content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


# -- integrity ------------------------------------------------------------------------------------
# A checkpoint records the SHA-256 of every file it holds (archlab.checkpoint's manifest.json,
# the COMPLETE marker of a training checkpoint); a reader recomputes them before trusting the
# files, so a bit flip or a truncated copy is an error naming the file, never silently altered
# weights. These helpers only compute and compare; the callers raise their typed errors.


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of the file at ``path``, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def digest_problems(directory: str | os.PathLike[str], digests: Any) -> list[str]:
    """What does not match in ``directory`` against ``digests`` (file name -> hex SHA-256).

    Returns one line per problem (``"model.safetensors: SHA-256 mismatch ..."``, ``"...:
    missing"``); empty when every listed file is there with its recorded digest.
    """
    if not isinstance(digests, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in digests.items()):
        return [
            f"the recorded digests are malformed (expected a mapping of file name to hex SHA-256; got {digests!r:.80})"
        ]
    directory = Path(directory)
    problems = []
    for name, expected in digests.items():
        path = directory / name
        if Path(name).name != name:
            problems.append(f"{name}: not a plain file name")
        elif not path.is_file():
            problems.append(f"{path}: missing")
        else:
            actual = sha256_file(path)
            if actual != expected:
                problems.append(f"{path}: SHA-256 mismatch (recorded {expected[:12]}..., file has {actual[:12]}...)")
    return problems
