"""Data-parallel training on 2 processes (gloo, loopback; issue 14).

One 2-process session (``torch.multiprocessing``, spawn) runs every in-process scenario once and
leaves its weights and messages in a folder; the tests compare them with single-process runs in
this process. A second group launches ``archlab train ... --nproc 2`` through torchrun, with a
plugin model that SIGKILLs rank 1 once, and checks the restarted run against the session's
uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import traceback
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import archlab
from archlab.rundir import find_checkpoint
from test_train_support import digits_bundle

REPO = Path(__file__).resolve().parents[1]
SESSION_TIMEOUT_S = 240  # a hung collective fails the tests instead of hanging them

# Engine scenarios: SGD on a 200-sample digits bundle, 6 steps of a global batch of 32.
COMMON = dict(
    batch_size=32,
    max_steps=6,
    lr=0.1,
    optimizer="sgd",
    precision="fp32",
    eval_every=3,
    checkpoint_every=2,
    log_every=1,
    seed=0,
    device="cpu",
)

# The CLI scenario: examples/digits_cnn.yaml, shortened, with rank 1 killed once at its 10th step.
PLUGIN_MODEL = "ddp_kill_cnn"
PLUGIN = textwrap.dedent(
    f"""
    import os
    import signal
    from pathlib import Path

    from archlab.models.cnn import CNN, CNNConfig
    from archlab.registry import get_entry, register


    class KillOnce(CNN):
        '''cnn_digits that SIGKILLs rank 1 at its Nth training forward, once (a marker file).'''

        calls = 0

        def forward(self, x):
            if self.training:
                KillOnce.calls += 1
                marker = os.environ.get("ARCHLAB_TEST_KILL_MARKER")
                at = int(os.environ.get("ARCHLAB_TEST_KILL_AT", "0"))
                if marker and os.environ.get("RANK") == "1" and KillOnce.calls == at and not os.path.exists(marker):
                    Path(marker).write_text("killed")
                    os.kill(os.getpid(), signal.SIGKILL)
            return super().forward(x)


    base = get_entry("cnn_digits")
    register("{PLUGIN_MODEL}", family="cnn", model=KillOnce, config=CNNConfig, defaults=dict(base.defaults),
             modalities=base.modalities, tasks=base.tasks, description="test: cnn_digits killed once")
    """
)
CLI_ARGS = [
    "train",
    str(REPO / "examples" / "digits_cnn.yaml"),
    "--model",
    PLUGIN_MODEL,
    "--set",
    "train.max_steps=12",
    "--set",
    "train.eval_every=4",
    "--set",
    "train.checkpoint_every=4",
    "--set",
    "train.log_every=1",
    "--set",
    "train.device=cpu",
    "-q",
]
KILL_AT = 10  # rank 1 dies in step 10; the restart resumes from step 8's checkpoint


class Net(nn.Module):
    """A small MLP for the digits bundle, optionally with a BatchNorm on its input, an exception at
    its Nth training forward (an interruption on every rank), or NaN outputs on one rank."""

    def __init__(self, bn: bool = False, fail_at: int | None = None, nan_rank: int | None = None):
        super().__init__()
        self.norm = nn.BatchNorm1d(64) if bn else nn.Identity()
        self.body = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))
        self.fail_at, self.nan_rank, self.calls = fail_at, nan_rank, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 64) -> (B, 10)
        if self.training:
            self.calls += 1
            if self.calls == self.fail_at:
                raise RuntimeError("interrupted on purpose")
        out = self.body(self.norm(x))
        if self.training and self.calls == 3 and self.nan_rank == int(os.environ.get("RANK", "0")):
            out = out * float("nan")
        return out


def _net(**kw) -> Net:
    torch.manual_seed(0)  # the same initial weights in every run (the engine broadcasts rank 0's anyway)
    return Net(**kw)


def _fit(out: Path, name: str, model: Net, **extra):
    return archlab.fit(model, digits_bundle(200), "classification", out_dir=out, run_name=name, **{**COMMON, **extra})


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def _ckpt_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    last = find_checkpoint(run_dir, "last")
    assert last is not None, f"no last/ checkpoint in {run_dir}"
    return load_file(str(last / "model.safetensors"))


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# -- the 2-process session --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session(rank: int, port: int, out: str, plugin_module: str) -> None:
    """One rank of the session: every scenario in turn, results into ``out``."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    root, said = Path(out), {}
    try:
        # (1, 3) the plain model; (2) BatchNorm on the input, last weights (not best) compared
        save_file(_weights(_fit(root / "ddp", "plain", _net()).model), str(root / f"plain_{rank}.safetensors"))
        save_file(
            _weights(_fit(root / "ddp", "bn", _net(bn=True), restore_best=False).model),
            str(root / f"bn_{rank}.safetensors"),
        )
        # (5) interrupted at step 5 on every rank (checkpoint at step 4), kept, then resumed
        try:
            _fit(root / "ddp", "cut", _net(fail_at=5))
        except RuntimeError as exc:
            said["cut"] = str(exc)
        from archlab.train import distributed

        if rank == 0:
            shutil.copytree(root / "ddp" / "cut", root / "cut_copy")  # for the resume with 1 process
        distributed.current().barrier()
        resumed = archlab.resume(root / "ddp" / "cut", digits_bundle(200), model=_net())
        save_file(_weights(resumed.model), str(root / f"cut_{rank}.safetensors"))
        # (6) NaN on rank 1 only
        try:
            _fit(root / "ddp", "nan", _net(nan_rank=1))
            said["nan"] = "no error"
        except Exception as exc:  # the test checks the type
            said["nan"] = f"{type(exc).__name__}: {exc}"
        # (4) the uninterrupted CLI run the killed one must equal (the CLI leaves the group at its end)
        from archlab.cli.main import main

        said["cli_rc"] = main(["--plugin", plugin_module, *CLI_ARGS, "--out-dir", str(root / "cli"), "--name", "ref"])
    except BaseException:
        said["crash"] = traceback.format_exc()
        raise
    finally:
        (root / f"said_{rank}.json").write_text(json.dumps(said))


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """The plugin module's name and folder; the folder is on sys.path here (and so in the spawned
    session's processes) and on PYTHONPATH of the torchrun launches."""
    folder = tmp_path_factory.mktemp("plugin")
    (folder / "ddp_kill_plugin.py").write_text(PLUGIN)
    sys.path.insert(0, str(folder))
    yield "ddp_kill_plugin", folder
    sys.path.remove(str(folder))


@pytest.fixture(scope="module")
def session(tmp_path_factory, plugin):
    """Run the 2-process session once; the folder it filled."""
    out = tmp_path_factory.mktemp("ddp")
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        ctx = torch.multiprocessing.start_processes(
            _session, args=(_free_port(), str(out), plugin[0]), nprocs=2, join=False, start_method="spawn"
        )
        deadline = time.monotonic() + SESSION_TIMEOUT_S
        while not ctx.join(timeout=5):
            if time.monotonic() > deadline:
                for p in ctx.processes:
                    p.kill()
                pytest.fail(f"the 2-process session did not end within {SESSION_TIMEOUT_S} s")
    finally:
        if old is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = old
    said = [json.loads((out / f"said_{r}.json").read_text()) for r in range(2)]
    assert not any("crash" in s for s in said), said
    return out, said


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The same scenarios in one process (batch 32 on one rank)."""
    out = tmp_path_factory.mktemp("single")
    return out, {"plain": _fit(out, "plain", _net()), "bn": _fit(out, "bn", _net(bn=True), restore_best=False)}


def test_two_processes_of_half_batches_match_one_process(session, single):
    out, _ = session
    one = _weights(single[1]["plain"].model)
    ranks = [load_file(str(out / f"plain_{r}.safetensors")) for r in range(2)]
    for k in one:
        assert torch.equal(ranks[0][k], ranks[1][k]), f"{k} differs between ranks"
        torch.testing.assert_close(ranks[0][k], one[k], rtol=1e-5, atol=1e-6, msg=f"{k}: DDP 2 x 16 vs 1 x 32")
    assert not torch.equal(ranks[0]["body.0.weight"], _weights(_net())["body.0.weight"])  # it did train


def test_batchnorm_running_statistics_are_the_mean_over_ranks(session, single):
    out, _ = session
    ranks = [load_file(str(out / f"bn_{r}.safetensors")) for r in range(2)]
    for k in ranks[0]:
        assert torch.equal(ranks[0][k], ranks[1][k]), f"{k} differs between ranks"
    # The BatchNorm sees the data itself, so its running mean is linear in the batch means: the
    # mean over ranks of the per-shard running means equals the one-process running mean.
    one = _weights(single[1]["bn"].model)
    torch.testing.assert_close(ranks[0]["norm.running_mean"], one["norm.running_mean"], rtol=1e-5, atol=1e-6)
    assert float(ranks[0]["norm.running_mean"].abs().sum()) > 0  # the statistics did move
    assert torch.isfinite(ranks[0]["body.0.weight"]).all()


def test_only_rank_0_writes(session, single):
    out, _ = session
    ddp, one = out / "ddp" / "plain", single[0] / "plain"
    assert _files(ddp) == _files(one)  # no file of its own from rank 1, none missing
    records = [json.loads(line) for line in (ddp / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == list(range(1, COMMON["max_steps"] + 1))
    assert [r["step"] for r in records if r["kind"] == "eval"] == [3, 6]
    assert sum(r["kind"] == "final" for r in records) == 1


def test_resume_with_the_same_world_size_is_exact(session):
    out, said = session
    assert said[0]["cut"] == said[1]["cut"] == "interrupted on purpose"
    plain = load_file(str(out / "plain_0.safetensors"))
    for r in range(2):
        cut = load_file(str(out / f"cut_{r}.safetensors"))
        assert all(torch.equal(cut[k], plain[k]) for k in plain), f"rank {r}: resumed run != uninterrupted run"


def test_resume_with_another_world_size_warns(session, caplog):
    out, _ = session
    with caplog.at_level(logging.WARNING, logger="archlab"):
        result = archlab.resume(out / "cut_copy", digits_bundle(200), model=_net())
    assert result.steps == COMMON["max_steps"]
    assert any("2 process" in r.getMessage() and "on 1" in r.getMessage() for r in caplog.records), caplog.text


def test_nan_on_one_rank_stops_every_rank_with_the_same_error(session):
    _, said = session
    assert said[0]["nan"].startswith("NonFiniteLossError: "), said[0]["nan"]
    assert said[0]["nan"] == said[1]["nan"]


# -- through torchrun -------------------------------------------------------------------------------


def _archlab(args: list[str], plugin_folder: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(plugin_folder), **env}
    return subprocess.run(
        [sys.executable, "-m", "archlab", *args], cwd=REPO, env=environ, capture_output=True, text=True, timeout=300
    )


def test_cli_nproc_2_survives_a_sigkill_and_equals_the_uninterrupted_run(session, plugin, tmp_path):
    out, said = session
    assert said[0]["cli_rc"] == said[1]["cli_rc"] == 0
    marker = tmp_path / "killed"
    done = _archlab(
        ["--plugin", plugin[0], *CLI_ARGS, "--out-dir", str(tmp_path / "runs"), "--nproc", "2", "--max-restarts", "1"],
        plugin[1],
        ARCHLAB_TEST_KILL_MARKER=str(marker),
        ARCHLAB_TEST_KILL_AT=str(KILL_AT),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert marker.read_text() == "killed"  # rank 1 was killed, and the restart went on
    (run,) = (tmp_path / "runs").iterdir()  # one run: the restart resumed it, not a new one
    assert json.loads((run / "launch.json").read_text())["restarts"] == 1
    assert done.stdout.count("run directory:") == 1, done.stderr[-3000:]  # rank 0's result only
    ref = out / "cli" / "ref"
    killed, whole = _ckpt_weights(run), _ckpt_weights(ref)
    assert all(torch.equal(killed[k], whole[k]) for k in whole), "the restarted run differs from the uninterrupted one"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == list(range(1, 13))
    assert json.loads((run / "final_metrics.json").read_text())["step"] == 12


def test_a_worker_failure_is_one_line_naming_the_rank_and_its_error(monkeypatch):
    from archlab.runs import launch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    with pytest.raises(launch.LaunchError) as caught:
        launch.launch(2, ["train"])  # no model, no data: each worker stops with a ConfigError
    message = str(caught.value)
    assert caught.value.exit_code == 2  # the worker's exit status (a ConfigError)
    assert message.startswith("rank ") and "exited with status 2" in message
    assert "ConfigError: train needs a model and a dataset" in message and "\n" not in message


def test_a_killed_worker_is_named_with_its_signal():
    from types import SimpleNamespace

    from archlab.runs.launch import _exit_code, _failure_line

    killed = SimpleNamespace(exitcode=-signal.SIGKILL, local_rank=1, message="Signal 9 (SIGKILL) received by PID 7")
    assert _failure_line(1, killed, 0) == "rank 1 (local rank 1) was killed by SIGKILL: its output is above"
    assert _exit_code(killed.exitcode) == 128 + signal.SIGKILL


@pytest.mark.parametrize(
    "args,match",
    [
        (["--nproc", "0"], "--nproc is the number of processes"),
        (["--max-restarts", "1"], "give --nproc too"),
        (["--nproc", "2", "--max-restarts", "-1"], "--max-restarts is a count"),
        (["--nproc", "2", "--seeds", "2"], "--cv / --seeds"),
    ],
)
def test_cli_refuses_bad_process_options(args, match, capsys):
    from archlab.cli.main import main

    assert main(["train", "--model", "mlp_tabular", "--data", "digits", *args]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("ConfigError: ") and match in line
