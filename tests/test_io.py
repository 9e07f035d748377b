"""Atomic writes: the content lands whole, and the file mode follows the umask (issue 15)."""

from __future__ import annotations

import os
import stat

from archlab.io import atomic_write_bytes, atomic_write_json


def test_atomic_write_keeps_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_write_bytes(tmp_path / "a.bin", b"abc")
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
        os.umask(0o077)
        q = atomic_write_json(tmp_path / "b.json", {"x": 1})
        assert stat.S_IMODE(q.stat().st_mode) == 0o600
    finally:
        os.umask(old)
    assert p.read_bytes() == b"abc" and q.read_text().strip().startswith("{")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.bin", "b.json"]  # no temp files left
