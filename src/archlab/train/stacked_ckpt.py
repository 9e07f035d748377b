"""The checkpoint of a stack (:mod:`archlab.train.stacked`): every member's state in one directory.

The stack object is typed ``Any`` here: :mod:`archlab.train.stacked` imports this module, and
an import back (even for type checking) would be a cycle.

Written with the protocol of :mod:`archlab.train.state` (files into ``.last.tmp/``, ``COMPLETE``
with their digests last, then the swap that keeps ``last.prev/``), so a kill at any moment leaves
a complete checkpoint and :func:`archlab.rundir.find_checkpoint` picks it. Nothing is pickled:

- ``stack.safetensors``: stacked parameters and buffers (``param.*``, ``buffer.*``), the
  optimizer's moments and step counts (``opt.*``), each member's running loss sum, epoch
  permutation (``perm.I``) and data generator (``rng.data.I``), and the stack's torch RNG
  (the dropout stream under vmap), numpy's and python's;
- ``stack.json``: the stack's step and each member's counters, best value and early stopping,
  and the python / numpy RNG states' scalars.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from archlab.checkpoint import tensors_from_bytes, tensors_to_bytes
from archlab.errors import CheckpointError
from archlab.io import atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_bytes
from archlab.rundir import COMPLETE, RunDir, verify_checkpoint
from archlab.train.state import _swap_in, rng_state, set_rng_state

TENSORS = RunDir.STACK_TENSORS
META = RunDir.STACK_META


def write_stack_checkpoint(directory: Path, s: Any) -> Path:
    """Write the stack's complete state to ``directory`` crash-safely."""
    # torch (the dropout stream under vmap), numpy, python, and member 0's data generator
    tensors, rng_meta = rng_state(s.members[0].gen)
    tensors["loss_sums"] = s.loss_sums
    tensors.update({f"param.{k}": v for k, v in s.params.items()})
    tensors.update({f"buffer.{k}": v for k, v in s.buffers.items()})
    tensors.update(s.optim.state_tensors())
    members = []
    for m in s.members:
        tensors[f"rng.data.{m.index}"] = m.gen.get_state()
        if m.state.perm is not None:
            tensors[f"perm.{m.index}"] = m.state.perm
        members.append({**m.state.scalars(), "loss_count": int(s.loss_count[m.index])})
    meta = {"step": s.step, "members": members, "rng": rng_meta}
    tmp = directory.with_name(f".{directory.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    data = tensors_to_bytes({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()})
    atomic_write_bytes(tmp / TENSORS, data)
    text = json.dumps(meta, indent=2) + "\n"
    atomic_write_text(tmp / META, text)
    digests = {TENSORS: sha256_bytes(data), META: sha256_bytes(text.encode("utf-8"))}
    atomic_write_json(tmp / COMPLETE, {"step": s.step, "sha256": digests})
    _swap_in(tmp, directory)
    return directory


def read_stack_checkpoint(directory: Path, s: Any) -> None:
    """Load a checkpoint :func:`write_stack_checkpoint` wrote into the live stack ``s``.

    Raises:
        CheckpointError: the checkpoint does not verify or does not fit this stack (other
            members, another model); the message names the file.
    """
    verify_checkpoint(directory)
    path = directory / META
    try:
        meta: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        members = meta["members"]
        step = int(meta["step"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} is not a stack checkpoint's state ({type(exc).__name__}: {exc})") from None
    if not isinstance(members, list) or len(members) != len(s.members):
        raise CheckpointError(
            f"{path} holds {len(members) if isinstance(members, list) else '?'} members; this stack has {len(s.members)}"
        )
    source = directory / TENSORS
    tensors = tensors_from_bytes(source.read_bytes(), str(source))
    try:
        for k, v in s.params.items():
            v.copy_(tensors[f"param.{k}"])
        for k, v in s.buffers.items():
            v.copy_(tensors[f"buffer.{k}"])
        s.optim.load_state_tensors(tensors)
        s.loss_sums.copy_(tensors["loss_sums"])
        for m, saved in zip(s.members, members):
            saved = dict(saved)
            s.loss_count[m.index] = int(saved.pop("loss_count"))
            for key, value in saved.items():
                setattr(m.state, key, value)
            perm = tensors.get(f"perm.{m.index}")
            m.state.perm = perm.to(s.device) if perm is not None else None
            m.gen.set_state(tensors[f"rng.data.{m.index}"])
        set_rng_state(tensors, meta["rng"], s.members[0].gen)
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{directory} does not fit this stack ({type(exc).__name__}: {exc})") from None
    s.step = step
