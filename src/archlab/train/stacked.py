"""Many models at once: N members of one architecture trained in one vectorised step.

Small models on small data spend their step in Python and kernel-launch overhead, so N runs one
after another cost about N times one. Here the members' parameters and buffers are stacked
(``torch.func.stack_module_state``: every tensor gets a leading member dimension N) and one
``vmap`` over ``functional_call`` runs the forward of all of them and one autograd pass their
backward; :class:`~archlab.train.stacked_optim.StackedAdam` then updates every member in one pass.

What each member keeps of its own, as a single run of :func:`archlab.train.train_model` would have it:

- its **initial weights** (the caller builds each model after seeding with the member's seed);
- its **data**: its own training split (a fold) or a shared one, its own data generator seeded
  with its seed, so the sample order is a single run's, epoch by epoch;
- its **optimizer hyper-parameters and schedule** (lr, weight decay, betas, warmup, length);
- its **BatchNorm running statistics** (stacked buffers, updated in place under vmap);
- its **evaluation, best checkpoint and early stopping**: a stopped member is masked out, its
  parameters, moments and buffers no longer change; its run directory is written as a single
  run's (metrics.jsonl, best/, last/, final_metrics.json).

What is not a single run's: dropout masks. Under ``vmap(randomness="different")`` each member
draws its own masks, but from the stack's generator, not from the member's own torch RNG
stream, so with dropout active a member is a different (equally distributed) sample of the
single run, not the same numbers. Without dropout (or with ``p=0``) a member's weights and
metrics equal the single run's up to float reduction order (the tests state the tolerance).

The stack's checkpoint (``stack_dir/last``, the protocol of :mod:`archlab.train.state`: temp dir,
digests in ``COMPLETE``, swap) holds every member's weights, buffers, moments, counters, data
order and generators, and the stack's RNG, so a killed stack resumes bitwise.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import stack_module_state

from archlab.data.base import DataBundle, Split, is_streamed
from archlab.errors import ConfigError
from archlab.io import atomic_write_json
from archlab.rundir import RunDir, find_checkpoint
from archlab.train.batches import eval_subset
from archlab.train.config import TrainConfig
from archlab.train.evaluate import evaluate_split
from archlab.train.loop import NonFiniteLossError, RunResult, resolve_monitor
from archlab.train.precision import choose_precision, resolve_device
from archlab.train.progress import Reporter
from archlab.train.stacked_ckpt import read_stack_checkpoint, write_stack_checkpoint
from archlab.train.stacked_optim import StackedAdam, lr_table
from archlab.train.stacked_step import _base_task_method, _flatten, _make_step, _views, step_kind
from archlab.train.stacked_step import probe as probe  # part of this module's API (runs.stacked)
from archlab.train.state import TrainState, load_model_weights, write_checkpoint

log = logging.getLogger("archlab.train")

#: TrainConfig fields that must be equal in every member: the shape of a step and of the loss
SHARED_FIELDS = (
    "batch_size",
    "shuffle",
    "drop_last",
    "optimizer",
    "grad_clip",
    "grad_accum",
    "label_smoothing",
    "class_weights",
    "focal_gamma",
    "device",
)


@dataclass
class StackMember:
    """One model of a stack, prepared as a single run would be.

    Attributes:
        model: built after seeding with ``cfg.seed`` (so its initial weights are the single run's).
        data: its splits (a fold's, or shared with the other members).
        task: its task object (set up on ``data`` by the engine).
        cfg: its training config (seed, lr, weight decay, length, patience may differ).
        run_dir: its run directory (config.yaml already written by the caller).
    """

    model: nn.Module
    data: DataBundle
    task: Any
    cfg: TrainConfig
    run_dir: Path


def why_not_stack(members: list[StackMember]) -> str | None:
    """Why these members cannot train as one stack, or None when they can (config checks only;
    :func:`probe` tries the model itself)."""
    first = members[0]
    for f in SHARED_FIELDS:
        values = {repr(getattr(m.cfg, f)) for m in members}
        if len(values) > 1:
            return f"train.{f} differs between members ({sorted(values)})"
    cfg = first.cfg
    checks = [
        (cfg.optimizer not in ("adam", "adamw"), f"optimizer={cfg.optimizer!r} (the stacked optimizer is Adam/AdamW)"),
        (cfg.grad_accum != 1, "gradient accumulation"),
        (cfg.augment is not None, "batch augmentation"),
        (cfg.class_weights == "balanced", "class_weights='balanced' (each member's own weights)"),
        (cfg.transfer != type(cfg.transfer)(), "transfer settings (frozen layers, head lr, LoRA)"),
        (
            choose_precision(cfg.precision, resolve_device(cfg.device)).precision != "fp32",
            f"precision={cfg.precision!r} (mixed precision on this device; the stack trains in fp32)",
        ),
        (cfg.eval_samples is not None, "eval_samples"),
    ]
    for bad, what in checks:
        if bad:
            return f"{what} is not supported in a stack"
    task_type = type(first.task)
    if any(type(m.task) is not task_type for m in members):
        return "the members' tasks differ"
    if task_type.training_step is not _base_task_method(first.task, "training_step"):
        return f"task {first.task.name!r} takes its own training step (several optimizers or a custom loss)"
    if not first.task.needs_target:
        return f"task {first.task.name!r} trains without targets"
    for m in members:
        if is_streamed(m.data.train) or not m.data.train.indexable or m.data.train.target is None:
            return "a training split is streamed from disk or a whole graph"
    names = [sorted((k, tuple(v.shape), v.dtype) for k, v in m.model.state_dict().items()) for m in members]
    if any(n != names[0] for n in names):
        return "the members' models have different parameters"
    return None


class _StackData:
    """The members' training tensors: shared (one split for all, the seeds case) or stacked and
    padded to the longest split (folds), gathered per step with one index per tensor."""

    def __init__(self, splits: list[Split], device: torch.device):
        self.shared = all(s is splits[0] for s in splits)
        self.sizes = [len(s) for s in splits]
        if self.shared:
            s = splits[0].to(device)
            self.tensors = [*s.inputs, s.target]
        else:
            n = max(self.sizes)
            self.tensors = []
            for j in range(len(splits[0].inputs) + 1):
                parts = [(s.inputs[j] if j < len(s.inputs) else s.target) for s in splits]
                out = parts[0].new_zeros((len(parts), n) + tuple(parts[0].shape[1:]))
                for i, p in enumerate(parts):
                    out[i, : len(p)] = p
                self.tensors.append(out.to(device))
        self.members = torch.arange(len(splits), device=device)[:, None]

    def gather(self, rows: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """``rows`` (N, B) of each member's split -> (inputs, target), each (N, B, ...)."""
        got = [t[rows] if self.shared else t[self.members, rows] for t in self.tensors]
        return tuple(got[:-1]), got[-1]


# -- the engine ------------------------------------------------------------------------------------


def _member_rows(m: _MemberRun, device: torch.device) -> torch.Tensor:
    """The rows of the member's next micro-batch; advances its state as
    :class:`archlab.train.batches.Batches` does for an in-memory split."""
    lo = m.state.pos * m.cfg.batch_size
    length = min(m.cfg.batch_size, m.n - lo)
    rows = _epoch_perm(m, device)[lo : lo + length] if m.cfg.shuffle else torch.arange(lo, lo + length, device=device)
    _count_batch(m)
    return rows


def _epoch_perm(m: _MemberRun, device: torch.device) -> torch.Tensor:
    """The member's sample order of this epoch, drawn from its data generator at its first batch."""
    if m.state.perm is None:
        m.state.perm = torch.randperm(m.n, generator=m.gen).to(device)
    return m.state.perm


def _count_batch(m: _MemberRun) -> None:
    st = m.state
    st.pos += 1
    if st.pos >= m.per_epoch:
        st.epoch, st.pos, st.perm = st.epoch + 1, 0, None
    st.micro += 1


@dataclass
class _MemberRun:
    """A member's live state in the loop."""

    index: int
    model: nn.Module
    task: Any
    cfg: TrainConfig
    run: RunDir
    data: DataBundle
    val: Any
    gen: torch.Generator
    state: TrainState
    n: int
    per_epoch: int
    total: int
    eval_every: int
    monitor: str  # cfg.monitor, or the task's selection metric (monitor: auto)
    mode: str
    last_eval: dict[str, Any] | None = None

    @property
    def running(self) -> bool:
        return self.state.step < self.total and not self.state.stopped_early


def _point_into(model: nn.Module, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], i: int) -> None:
    """Make ``model``'s parameters and buffers views of member ``i`` of the stacked tensors, so
    the module always holds the member's current weights (evaluation and checkpoints use it)."""
    for name, p in model.named_parameters():
        p.data = params[name][i]
    for name, _ in model.named_buffers():
        owner = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        owner._buffers[name.rpartition(".")[2]] = buffers[name][i]


def _stack_seed(cfgs: list[TrainConfig]) -> int:
    """The seed of the stack's own RNG (dropout masks under vmap), fixed by the members' seeds."""
    seed = 0
    for c in cfgs:
        seed = (seed * 1_000_003 + c.seed) % (2**63)
    return seed


class _Stack:
    """Everything the loop reads and advances: stacked tensors, optimizer, members, schedules."""

    def __init__(self, members: list[StackMember], stack_dir: Path, reporter: Reporter):
        self.dir, self.reporter = Path(stack_dir), reporter
        self.device = resolve_device(members[0].cfg.device)
        cfg0 = members[0].cfg
        self.members: list[_MemberRun] = []
        for i, m in enumerate(members):
            m.model.to(self.device).train()
            m.task.setup(m.data, m.cfg, self.device)
            n = len(m.data.train)
            per_epoch = n // cfg0.batch_size if cfg0.drop_last else -(-n // cfg0.batch_size)
            if per_epoch == 0:
                raise ConfigError(f"drop_last=True with batch_size={cfg0.batch_size} leaves no batch of {n} samples")
            total = m.cfg.total_steps(per_epoch)
            val = m.data.val.to(self.device) if m.data.val is not None else None
            if m.cfg.patience is not None and val is None:
                raise ConfigError(f"early stopping (patience={m.cfg.patience}) needs a validation split")
            self.members.append(
                _MemberRun(
                    index=i,
                    model=m.model,
                    task=m.task,
                    cfg=m.cfg,
                    run=RunDir(m.run_dir),
                    data=m.data,
                    val=eval_subset(val, m.cfg.eval_samples),
                    gen=torch.Generator().manual_seed(m.cfg.seed),
                    state=TrainState(),
                    n=n,
                    per_epoch=per_epoch,
                    total=total,
                    eval_every=m.cfg.eval_every or per_epoch,
                    **resolve_monitor(m.task, m.cfg),
                )
            )
        params, self.buffers = stack_module_state([m.model for m in members])
        self.flat, self.shapes = _flatten(params)  # every member's parameters, one row each
        self.params = _views(self.flat, list(params), self.shapes)
        for i, m in enumerate(self.members):
            _point_into(m.model, self.params, self.buffers, i)
        self.base = members[0].model  # functional_call swaps the stacked tensors in for each call
        self.data = _StackData([m.data.train for m in members], self.device)
        decays = torch.cat([torch.full((math.prod(sh),), len(sh) >= 2) for sh in self.shapes]).to(self.device)
        self.optim = StackedAdam(self.flat, decays, [m.cfg for m in members])
        self.lr = lr_table([m.cfg for m in members], [m.total for m in self.members]).to(self.device)
        sample = members[0].data.train.take(torch.arange(min(cfg0.batch_size, self.members[0].n))).to(self.device)
        kind, reason = step_kind(self.base, members[0].task, sample, cfg0.grad_clip)
        if kind is None:
            raise ConfigError(f"these {len(members)} runs cannot train as one stack: {reason}")
        names = list(self.params)
        self.step_fn = _make_step(self.base, members[0].task, cfg0.grad_clip, names, list(self.buffers), kind)
        self.step = 0  # steps of the stack (every running member has done this many)
        self.total = max(m.total for m in self.members)
        self.ckpt_every = cfg0.checkpoint_every or min(m.eval_every for m in self.members)
        self.loss_sums = torch.zeros(len(members), device=self.device)
        self.loss_count = torch.zeros(len(members), dtype=torch.long, device=self.device)
        self.eval_bs = cfg0.eval_batch_size or max(cfg0.batch_size, 512)
        self.all_active = torch.ones(len(members), dtype=torch.bool, device=self.device)
        self.lockstep_data = cfg0.shuffle and len({m.n for m in self.members}) == 1
        self.perm_stack, self.perm_epochs = None, None
        self.prune: Callable[[int, dict[str, Any]], bool] | None = None

    # -- checkpoints ----------------------------------------------------------------------------
    def save(self) -> None:
        write_stack_checkpoint(self.dir / RunDir.LAST, self)

    def restore(self) -> bool:
        """Load the last stack checkpoint, if any; True when resumed."""
        ckpt = find_checkpoint(self.dir, RunDir.LAST)
        if ckpt is None:
            return False
        read_stack_checkpoint(ckpt, self)
        for m in self.members:
            m.run.truncate_metrics(m.state.step)
        log.info("resuming the stack in %s from step %d", self.dir, self.step)
        return True

    # -- one step of every running member -------------------------------------------------------
    def advance(self) -> None:
        running = [m for m in self.members if m.running]
        if len(running) == len(self.members) and self._lockstep():
            self._call(self._lockstep_rows(), self.all_active)
        else:
            self._advance_apart(running)
        self.step += 1
        for m in running:
            m.state.step += 1

    def _lockstep(self) -> bool:
        """Every member shuffles the same number of samples and is at the same batch of an epoch
        (seeds on one split): the batch rows are one slice of the members' stacked orders."""
        first = self.members[0].state
        return self.lockstep_data and all(m.state.pos == first.pos for m in self.members)

    def _lockstep_rows(self) -> torch.Tensor:
        perms = [_epoch_perm(m, self.device) for m in self.members]
        epochs = [m.state.epoch for m in self.members]
        if self.perm_epochs != epochs:  # a new epoch (or a resume): restack once
            self.perm_stack, self.perm_epochs = torch.stack(perms), epochs
        cfg, n = self.members[0].cfg, self.members[0].n
        lo = self.members[0].state.pos * cfg.batch_size
        for m in self.members:
            _count_batch(m)
        return self.perm_stack[:, lo : min(lo + cfg.batch_size, n)]

    def _advance_apart(self, running: list[_MemberRun]) -> None:
        rows = {m.index: _member_rows(m, self.device) for m in running}
        for length in sorted({len(r) for r in rows.values()}, reverse=True):
            # members whose batch has another length this step (a fold's last batch) sit out this
            # call with rows of their own data and are masked; usually there is one call
            active = [m.index in rows and len(rows[m.index]) == length for m in self.members]
            all_rows = torch.stack(
                [rows[i] if active[i] else torch.arange(length, device=self.device) for i in range(len(active))]
            )
            self._call(all_rows, torch.tensor(active, device=self.device))

    def _call(self, rows: torch.Tensor, active: torch.Tensor) -> None:
        inputs, target = self.data.gather(rows)
        masked = not bool(active.all())
        before = {k: b.clone() for k, b in self.buffers.items()} if masked else None
        grad, losses = self.step_fn(self.flat, self.shapes, list(self.buffers.values()), inputs, target)
        self.optim.step(grad, self.lr[:, min(self.step, self.lr.shape[1] - 1)], active)
        if before is not None:  # BatchNorm statistics of members sitting out stay as they were
            for k, b in self.buffers.items():
                keep = active.reshape((-1,) + (1,) * (b.ndim - 1))
                b.copy_(torch.where(keep, b, before[k]))
        self.loss_sums += torch.where(active, losses.detach().float(), 0.0)
        self.loss_count += active


def fit_stack(
    members: list[StackMember],
    *,
    stack_dir: str | Path,
    reporter: Reporter | None = None,
    resume: bool = False,
    prune: Callable[[int, dict[str, Any]], bool] | None = None,
) -> list[RunResult]:
    """Train ``members`` as one stack; write each member's run directory as a single run would.

    Args:
        members: prepared members (same architecture; see :func:`why_not_stack`).
        stack_dir: where the stack's own checkpoint goes (``stack_dir/last``).
        reporter: receives every member's records (each carries ``member``).
        prune: called after each evaluation of a member with (member index, its eval record);
            True stops that member there (a pruned search trial), as early stopping does.
        resume: continue from the stack's last complete checkpoint when there is one.

    Returns:
        One :class:`~archlab.train.loop.RunResult` per member, in order.

    Raises:
        ConfigError: the members cannot form one stack (the reason is named).
    """
    reason = why_not_stack(members)
    if reason is not None:
        raise ConfigError(f"these {len(members)} runs cannot train as one stack: {reason}")
    torch.manual_seed(_stack_seed([m.cfg for m in members]))
    s = _Stack(members, Path(stack_dir), reporter or Reporter())
    s.prune = prune
    for m in s.members:
        m.run.path.mkdir(parents=True, exist_ok=True)
    if not (resume and s.restore()):
        s.save()  # step 0: a stack killed before its first periodic checkpoint restarts from here
    s.reporter.start(s.total, s.step, f"a stack of {len(members)} members")
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        _loop(s)
        if find_checkpoint(s.dir, RunDir.LAST) is None or s.step % s.ckpt_every:
            s.save()
        train_time, train_cpu = time.perf_counter() - t0, time.process_time() - c0
        return [_finish(s, m, train_time, train_cpu) for m in s.members]
    finally:
        s.reporter.close()


def _loop(s: _Stack) -> None:
    """Steps until every member is done; each member logs, evaluates and stops on its own."""
    t_log = time.perf_counter()
    while any(m.running for m in s.members):
        running = [m for m in s.members if m.running]
        s.advance()
        logging_now = [m for m in running if m.state.step % m.cfg.log_every == 0 or m.state.step == m.total]
        if logging_now:
            now = time.perf_counter()
            sums = s.loss_sums.tolist()
            for m in logging_now:
                _log_train(s, m, sums[m.index], now - t_log)
            t_log = now
        for m in running:
            if m.val is not None and (m.state.step % m.eval_every == 0 or m.state.step == m.total):
                _evaluate(s, m)
        if s.step % s.ckpt_every == 0 and any(m.running for m in s.members):
            s.save()


def _log_train(s: _Stack, m: _MemberRun, loss_sum: float, seconds: float) -> None:
    count = max(1, int(s.loss_count[m.index]))
    loss = loss_sum / count
    if loss != loss or loss in (float("inf"), float("-inf")):
        raise NonFiniteLossError(
            f"member {m.index} of the stack ({m.run.path}): training loss became NaN/Inf by step {m.state.step}. "
            "Try a lower lr, grad_clip, or train.stack=off to run the members one at a time."
        )
    rec = {
        "step": m.state.step,
        "epoch": m.state.epoch,
        "kind": "train",
        "loss": loss,
        "lr": float(s.lr[m.index, min(m.state.step - 1, s.lr.shape[1] - 1)]),
        "samples_per_s": count * m.cfg.batch_size / max(seconds, 1e-9),
    }
    s.loss_sums[m.index] = 0.0
    s.loss_count[m.index] = 0
    m.run.append_metrics(rec)
    s.reporter.record({**rec, "member": m.index})


def _evaluate(s: _Stack, m: _MemberRun) -> None:
    """As the single run's evaluation: metrics, best/ and early stopping on ``monitor``."""
    st, cfg = m.state, m.cfg
    rec = {
        "step": st.step,
        "epoch": st.epoch,
        "kind": "eval",
        **evaluate_split(m.model, m.task, m.val, batch_size=s.eval_bs, device=s.device),
    }
    m.last_eval = rec
    m.run.append_metrics(rec)
    s.reporter.record({**rec, "member": m.index})
    if m.monitor not in rec:
        raise ConfigError(f"monitor={m.monitor!r} is not a metric of this run; have {sorted(rec)}")
    value = rec[m.monitor]
    better = st.best_value is None or (
        value < st.best_value - cfg.min_delta if m.mode == "min" else value > st.best_value + cfg.min_delta
    )
    if better:
        st.best_value, st.best_step, st.bad_evals = value, st.step, 0
        write_checkpoint(m.run.best, m.model, extra={"step": st.step, "monitor": m.monitor, "value": value})
    else:
        st.bad_evals += 1
        st.stopped_early = cfg.patience is not None and st.bad_evals >= cfg.patience
    if s.prune is not None and s.prune(m.index, rec):
        st.stopped_early = True  # its parameters, moments and buffers are frozen from here


def _finish(s: _Stack, m: _MemberRun, train_time: float, train_cpu: float) -> RunResult:
    """The member's final weights (best or last), val and test metrics, final_metrics.json."""
    st, cfg = m.state, m.cfg
    write_checkpoint(m.run.last, m.model, extra={"step": st.step, "stacked": True})
    best_dir = find_checkpoint(m.run.path, RunDir.BEST)
    use_best = cfg.restore_best and best_dir is not None
    if use_best:
        load_model_weights(best_dir, m.model)
    final: dict[str, Any] = {
        "step": st.step,
        "epoch": st.epoch,
        "best_step": st.best_step,
        "monitor": m.monitor,
        "best_" + m.monitor: st.best_value,
        "stopped_early": st.stopped_early,
        "precision": "fp32",
        "device": str(s.device),
        "train_time_s": round(train_time, 3),  # the whole stack's
        "train_cpu_s": round(train_cpu, 3),
        "weights": RunDir.BEST if use_best else RunDir.LAST,
        "stack": {"members": len(s.members), "index": m.index},
    }
    seen = m.last_eval is not None and m.last_eval["step"] == (st.best_step if use_best else st.step)
    for prefix, split in (("val", m.data.val), ("test", m.data.test)):
        if prefix == "val" and seen:
            final.update({k: v for k, v in m.last_eval.items() if k.startswith("val_")})
        elif split is not None:
            final.update(evaluate_split(m.model, m.task, split, batch_size=s.eval_bs, device=s.device, prefix=prefix))
    atomic_write_json(m.run.final_metrics_path, final)

    m.run.append_metrics({"kind": "final", **final})
    s.reporter.record({"kind": "final", "member": m.index, **final})
    model = m.model
    for t in [*model.parameters(), *model.buffers()]:
        t.data = t.data.clone()  # its own tensors, no longer views into the stack
    return RunResult(
        run_dir=m.run.path,
        model=model,
        metrics=final,
        steps=st.step,
        best_step=st.best_step,
        best_value=st.best_value,
        stopped_early=st.stopped_early,
        history=m.run.read_metrics(),
    )
