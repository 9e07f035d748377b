"""Several processes: ``archlab train ... --nproc N`` runs the same command under ``torchrun``.

One machine (what ``--nproc N`` does; the equivalent command is logged)::

    python -m torch.distributed.run --standalone --nproc-per-node N [--max-restarts K] \\
        -m archlab train RUN.yaml --name NAME ...

``torchrun --nproc-per-node N -m archlab train ...`` works the same way (with ``--max-restarts``,
set ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` as ``--nproc`` does: restarted workers that share
torchrun's rendezvous store fail to connect, pytorch/pytorch#135712). Several machines join
through torchrun's rendezvous: run on every node, with the same id and endpoint (a host every node
reaches; port 29400 by default)::

    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
        --rdzv-id RUN_ID [--max-restarts K] -m archlab train RUN.yaml --name NAME --out-dir SHARED_DIR

(the run directory must be on storage every node sees: rank 0 writes it, and an elastic restart
resumes from it).

The launcher runs torchrun's own entry point in this process (:func:`torch.distributed.run.run`),
so the workers write to this terminal and a failure comes back as :class:`LaunchError`, one line
naming the first rank that failed and its error, instead of torchrun's traceback.

Elastic restarts: with ``--max-restarts K`` torchrun starts every worker again after one fails,
with ``TORCHELASTIC_RESTART_COUNT`` > 0 and the same ``TORCHELASTIC_RUN_ID``. Rank 0 records that
id in the run directory (``launch.json``), so the restarted command finds the run it started and
resumes it from its last complete checkpoint (:func:`archlab.runs.training.fit`), instead of
starting a new one. ``--nproc`` names the run up front (``--name``) so the search is one file.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

from archlab.errors import ArchlabError, ConfigError
from archlab.io import atomic_write_json
from archlab.rundir import RunDir

log = logging.getLogger("archlab.runs")

LAUNCH_FILE = RunDir.LAUNCH


class LaunchError(ArchlabError):
    """A worker of a multi-process run failed; ``exit_code`` is what the command exits with."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def torchrun_args(nproc: int, archlab_args: list[str], max_restarts: int = 0) -> list[str]:
    """torchrun's arguments for ``archlab ARCHLAB_ARGS`` on ``nproc`` local processes."""
    check_counts(nproc, max_restarts)
    return [
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        "--max-restarts",
        str(max_restarts),
        "-m",
        "archlab",
        *archlab_args,
    ]


def check_counts(nproc: int | None, max_restarts: int | None) -> None:
    """``--nproc`` >= 1 and ``--max-restarts`` >= 0 (only with ``--nproc``), or ConfigError."""
    if nproc is not None and (isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1):
        raise ConfigError(f"--nproc is the number of processes, an integer >= 1; got {nproc!r}")
    if max_restarts is not None:
        if nproc is None:
            raise ConfigError("--max-restarts restarts the workers of --nproc N; give --nproc too")
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise ConfigError(f"--max-restarts is a count, an integer >= 0; got {max_restarts!r}")


def launch(nproc: int, archlab_args: list[str], max_restarts: int = 0) -> int:
    """Run ``archlab ARCHLAB_ARGS`` on ``nproc`` processes of this machine through torchrun.

    Returns:
        0 when every worker ended well.

    Raises:
        ConfigError: bad counts, or already a worker of a distributed run.
        LaunchError: a worker failed (after the allowed restarts); its message names the rank,
            how it ended and its error, and ``exit_code`` is that worker's exit status.
    """
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        raise ConfigError("--nproc starts torchrun; this process already runs under torchrun (drop --nproc)")
    args = torchrun_args(nproc, archlab_args, max_restarts)
    log.info("launching: %s", shlex.join([sys.executable, "-m", "torch.distributed.run", *args]))
    # torchrun would set 1 thread per worker with a banner; share the cores out quietly instead
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    # Restarted workers must not share the rendezvous store of the failed round: its stale
    # process-group keys make the new group's connections fail (pytorch/pytorch#135712).
    os.environ.setdefault("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    with _quiet_torchrun():
        try:
            run(get_args_parser().parse_args(args))
        except ChildFailedError as exc:
            rank, failure = exc.get_first_failure()
            raise LaunchError(_failure_line(rank, failure, max_restarts), _exit_code(failure.exitcode)) from None
    return 0


def _failure_line(rank: int, failure: Any, max_restarts: int) -> str:
    code = failure.exitcode
    if code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    else:
        how = f"exited with status {code}"
    message = failure.message if isinstance(failure.message, str) else json.dumps(failure.message)
    if not message or message.startswith(("To enable traceback", "Signal ")):
        message = "its output is above"
    after = f" (after {max_restarts} restart{'s' if max_restarts != 1 else ''})" if max_restarts else ""
    return f"rank {rank} (local rank {failure.local_rank}) {how}{after}: {' '.join(message.split())}"


def _exit_code(code: int) -> int:
    return 128 - code if code < 0 else (code or 1)  # a signal as the shell reports it


@contextlib.contextmanager
def _quiet_torchrun():
    """torchrun's agent logs each failure and restart with a traceback; archlab says it in one
    line (the archlab logger at DEBUG, i.e. ``--debug``, keeps them)."""
    noisy = [logging.getLogger(n) for n in ("torch.distributed.elastic", "torch.distributed.run")]
    before = [lg.level for lg in noisy]
    if not logging.getLogger("archlab").isEnabledFor(logging.DEBUG):
        for lg in noisy:
            lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(noisy, before):
            lg.setLevel(level)


# -- inside a worker ------------------------------------------------------------------------------


def worker_rank() -> int:
    """This process's rank under torchrun (0 otherwise), read before the process group exists."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


@contextlib.contextmanager
def worker_errors():
    """Under torchrun, record an exception for the launcher (torchrun's error file) and re-raise,
    so :class:`LaunchError` can name it."""
    try:
        yield
    except Exception as exc:
        path = os.environ.get("TORCHELASTIC_ERROR_FILE")
        if path:
            with contextlib.suppress(OSError):
                line = " ".join(str(exc).split())
                atomic_write_json(path, {"message": f"{type(exc).__name__}: {line}", "timestamp": int(time.time())})
        raise


def elastic_restart() -> tuple[str, int] | None:
    """``(run id, restart count)`` when torchrun restarted this worker after a failure, else None."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    try:
        count = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    except ValueError:
        return None
    return (run_id, count) if run_id and count > 0 else None


def write_launch_record(run_dir: Path, world: int) -> None:
    """``RUN_DIR/launch.json``: torchrun's run id (what a restarted worker looks for), the world
    size and the restart count. Nothing outside torchrun."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    if not run_id:
        return
    restart = elastic_restart()
    atomic_write_json(
        Path(run_dir) / LAUNCH_FILE,
        {
            "run_id": run_id,
            "world": world,
            "restarts": restart[1] if restart else 0,
            "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
    )


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def find_launched_run(out_dir: str | Path, run_name: str | None, run_id: str) -> Path | None:
    """The run directory whose ``launch.json`` holds ``run_id``: ``OUT_DIR/RUN_NAME`` when named,
    else the newest such directory under ``out_dir``."""
    root = Path(out_dir)
    candidates = [root / run_name] if run_name else sorted(root.glob(f"*/{LAUNCH_FILE}"), key=_mtime, reverse=True)
    for c in candidates:
        run_dir = c if run_name else c.parent
        try:
            record = json.loads((run_dir / LAUNCH_FILE).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("run_id") == run_id:
            return run_dir
    return None
