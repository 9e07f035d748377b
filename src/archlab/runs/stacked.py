"""Groups of runs trained as one vmapped stack (:mod:`archlab.train.stacked`), where it pays.

:func:`archlab.runs.seeds.repeat_seeds` and :func:`archlab.runs.cv.cross_validate` hand their
members to :func:`fit_members`. Each member is prepared exactly as :func:`archlab.runs.fit`
prepares a run (seeded, model built and adapted to its data, the small-validation rule,
config.yaml and data_info.json in its own run directory); then either the whole group trains as
one stack, or :func:`fit_members` says why not (one logged line) and the caller trains the members
one at a time as before. Either way each member's directory is an ordinary run directory, so
reports, ``archlab compare`` and ``load_run`` see no difference; the group's ``stack.json``
records the choice and its reason, and the stack's own checkpoint lives in ``GROUP/stack/``.

Resume: a group whose ``stack/last`` checkpoint exists continues as a stack from it (bitwise);
members already finished are skipped as before.

When stacking pays (``train.stack: auto``): on CPU, one vmapped step of N small members costs
about one member's Python and launch overhead plus N members' arithmetic, so it pays while the
arithmetic per member step is small. The rule (:func:`stack_pays`) is the crossover measured by
``benchmarks/bench_stack.py`` (``benchmarks/results/stack.md``): stack when a member's training
FLOPs per step stay under :data:`CPU_FLOP_LIMIT`; on an accelerator, always.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archlab.data.base import DataBundle
from archlab.data.preprocess import record_preprocessing
from archlab.io import atomic_write_json
from archlab.rundir import RunDir, find_checkpoint
from archlab.runs.cost import eval_floor
from archlab.runs.training import _draw_curves, _jsonable, _model_section, _steps, check_fits
from archlab.tasks import get_task
from archlab.train import RunResult, TrainConfig
from archlab.train.precision import resolve_device
from archlab.train.progress import Reporter
from archlab.train.small_data import apply_policy
from archlab.train.stacked import StackMember, fit_stack, probe, why_not_stack
from archlab.train.state import seed_everything

log = logging.getLogger("archlab.runs")

#: a member's forward+backward FLOPs per training step above which stacking on CPU stops
#: paying (the crossover of benchmarks/results/stack.md)
CPU_FLOP_LIMIT = 2e9


@dataclass
class GroupMember:
    """One run of a group: where it goes, its data, and what differs from the group's config.

    Attributes:
        run_dir: its run directory.
        data: its splits (a fold, or the group's bundle).
        data_spec: how to reload its data (recorded in config.yaml).
        train: training fields of this member only (``{"seed": 3}``, ``{"lr": 1e-3}``).
    """

    run_dir: Path
    data: DataBundle
    data_spec: dict[str, Any]
    train: dict[str, Any] = field(default_factory=dict)


@dataclass
class StackOutcome:
    """What :func:`fit_members` did.

    Attributes:
        stacked: True when the members trained as one stack.
        reason: why (or why not), the line that was logged.
        members: per member ``(final metrics, "started" | "resumed" | "skipped", result)``;
            empty when not stacked (the caller trains them one at a time).
    """

    stacked: bool
    reason: str
    members: list[tuple[dict[str, Any], str, RunResult | None]] = field(default_factory=list)


def fit_members(
    model: nn.Module | str,
    task: Any,
    members: list[GroupMember],
    *,
    group_dir: Path,
    task_options: dict[str, Any] | None = None,
    model_overrides: dict[str, Any] | None = None,
    reporter: Reporter | None = None,
    prune: Callable[[int, dict[str, Any]], bool] | None = None,
    **train_config: Any,
) -> StackOutcome:
    """Train ``members`` as one stack when ``train.stack`` and the model allow it and it pays.

    This is also the entry point for a rung of same-architecture trials of the design search:
    one :class:`GroupMember` per trial with its own ``train`` fields (lr, weight decay, seed).

    Args:
        model: a registry name (built and adapted per member) or a module (copied per member).
        task: a task name or object (default: the data's task); one object per member is made.
        members: the runs, each with its run directory, data and own training fields.
        group_dir: the group's directory (``stack.json`` and ``stack/`` go there).
        task_options, model_overrides: as :func:`archlab.runs.fit`.
        reporter: receives every member's records (each carries ``member``).
        prune: called after each evaluation of a member with (member index, its eval record);
            True stops that member (an Optuna pruner's verdict on a trial).
        **train_config: fields of :class:`archlab.TrainConfig` shared by the members.

    Returns:
        A :class:`StackOutcome`; when ``stacked`` is False nothing was trained and the reason
        was logged.
    """
    outcome = _decide(model, task, members, group_dir, task_options, model_overrides, train_config)
    if isinstance(outcome, StackOutcome):
        return _record(group_dir, outcome)
    prepared, resuming = outcome
    _record(group_dir, StackOutcome(True, f"{len(members)} members trained as one vmapped stack"))
    results = fit_stack(
        prepared, stack_dir=group_dir / RunDir.STACK_DIR, reporter=reporter, resume=resuming, prune=prune
    )
    for r in results:
        _draw_curves(r.run_dir, r.history)
    what = "resumed" if resuming else "started"
    return StackOutcome(
        True, f"{len(members)} members trained as one vmapped stack", [(r.metrics, what, r) for r in results]
    )


def unpack(outcome: StackOutcome) -> tuple[list[dict[str, Any]], list[str], dict[int, RunResult]]:
    """A stacked outcome as the group loops keep it: metrics, what was done, results by index."""
    metrics = [m for m, _, _ in outcome.members]
    done = [w for _, w, _ in outcome.members]
    return metrics, done, {i: r for i, (_, _, r) in enumerate(outcome.members) if r is not None}


def _record(group_dir: Path, outcome: StackOutcome) -> StackOutcome:
    log.info("%s", outcome.reason if outcome.stacked else f"training one at a time: {outcome.reason}")
    atomic_write_json(group_dir / RunDir.STACK, {"stacked": outcome.stacked, "reason": outcome.reason})
    return outcome


def _decide(model, task, members, group_dir, task_options, model_overrides, train_config):
    """A StackOutcome saying why not, or (prepared members, resuming)."""
    cfg = TrainConfig.build({**train_config, **members[0].train})
    if cfg.stack == "off":
        return StackOutcome(False, "train.stack=off")
    if len(members) < 2:
        return StackOutcome(False, "a single member")
    finished = [RunDir(m.run_dir).final_metrics_path.is_file() for m in members]
    resuming = find_checkpoint(group_dir / RunDir.STACK_DIR, RunDir.LAST) is not None
    if all(finished):
        return StackOutcome(False, "every member is finished")
    if not resuming and any(RunDir(m.run_dir).has_config for m in members):
        return StackOutcome(False, "members were started one at a time; they resume that way")
    prepared = [_prepare(model, task, m, task_options, model_overrides, train_config) for m in members]
    reason = why_not_stack(prepared) or _model_reason(prepared[0], len(members), resuming)
    if reason is not None:
        if not resuming:  # nothing trained: the one-at-a-time path lays the runs out again
            for m in members:
                _remove_layout(m.run_dir)
        return StackOutcome(False, reason)
    return prepared, resuming


def _model_reason(first: StackMember, members: int, resuming: bool) -> str | None:
    """Why the model itself does not stack (vmap cannot run it, or it does not pay), or None."""
    device = resolve_device(first.cfg.device)
    first.task.setup(first.data, first.cfg, device)
    batch = first.data.train.take(torch.arange(min(first.cfg.batch_size, len(first.data.train)))).to(device)
    first.model.to(device)
    reason = probe(first.model, first.task, batch, first.cfg.grad_clip)
    if reason is None and not resuming:  # a stack begun is resumed as one, whatever the rule says now
        reason = stack_pays(first.model, batch, members, device)
    return reason


def _prepare(model, task, member: GroupMember, task_options, model_overrides, train_config) -> StackMember:
    """The member as :func:`archlab.runs.fit` prepares a run, up to the engine call."""
    cfg = TrainConfig.build({**train_config, **member.train})
    seed_everything(cfg.seed)  # before the model is built: the single run's initial weights
    bundle = member.data
    task_obj = get_task(task or bundle.task, **(task_options or {})) if task is None or isinstance(task, str) else task
    if not (task is None or isinstance(task, str)):
        task_obj = copy.deepcopy(task)
    if isinstance(model, str):
        from archlab.runs.adapt import build_model

        check_fits(model, bundle, task_obj)
        net = build_model(model, bundle, task_obj, model_overrides)
    else:
        net = copy.deepcopy(model)
        task_obj.model_overrides(bundle.info, bundle)
    section = _model_section(net, None)
    cfg, policy = apply_policy(cfg, 0 if bundle.val is None else len(bundle.val))
    bundle.info["model_selection"] = policy.to_dict()
    steps_per_epoch, total_steps = _steps(bundle, cfg)
    every = eval_floor(steps_per_epoch, total_steps) if cfg.eval_every is None and bundle.val is not None else None
    if every is not None:
        cfg = cfg.replace(eval_every=every)
    record_preprocessing(bundle)
    run = RunDir(member.run_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_config(
        {
            "model": section,
            "data": member.data_spec,
            "task": {"name": task_obj.name, "options": task_obj.options()},
            "train": cfg.to_dict(),
        }
    )
    atomic_write_json(run.data_info_path, _jsonable(bundle.info))
    return StackMember(model=net, data=bundle, task=task_obj, cfg=cfg, run_dir=run.path)


def _remove_layout(run_dir: Path) -> None:
    """Undo :func:`_prepare`'s files of a member that was not trained (a fresh one only)."""
    for name in (RunDir.CONFIG, RunDir.DATA_INFO):
        (run_dir / name).unlink(missing_ok=True)


def stack_pays(model: nn.Module, batch: Any, members: int, device: torch.device) -> str | None:
    """None when a stack of ``members`` copies of ``model`` trains faster than one at a time,
    else why not: on an accelerator always; on CPU while a member's training FLOPs per step
    stay under :data:`CPU_FLOP_LIMIT` (the measured crossover)."""
    if device.type != "cpu":
        return None
    flops = train_step_flops(model, batch)
    if flops > CPU_FLOP_LIMIT:
        return (
            f"a member's step is {flops / 1e9:.2g} GFLOP, over the {CPU_FLOP_LIMIT / 1e9:.2g} GFLOP where a stack "
            "stops paying on CPU (benchmarks/results/stack.md); set train.stack=auto on an accelerator"
        )
    return None


def train_step_flops(model: nn.Module, batch: Any) -> float:
    """Forward + backward FLOPs of one training step of ``model`` on ``batch`` (3x the forward's,
    counted by ``torch.utils.flop_counter``)."""
    from torch.utils.flop_counter import FlopCounterMode

    was = model.training
    try:
        with torch.random.fork_rng(), torch.no_grad(), FlopCounterMode(display=False) as counter:
            model.eval()
            model(*batch.inputs)
    finally:
        model.train(was)
    return 3.0 * counter.get_total_flops()


@functools.cache
def preset_stacks(name: str) -> str | None:
    """Whether registry preset ``name`` can train in a stack: None when vmap runs its training
    step, else why not. Probed once per process (its example input, a mean-of-output loss)."""
    from archlab.registry import create

    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = create(name)
        args = net.example_input(batch_size=2)
        args = args if isinstance(args, tuple) else (args,)
    from archlab.data.base import Split

    return probe(net, _OutputMean(), Split(inputs=args, target=torch.zeros(2)))


class _OutputMean:
    """A stand-in task for :func:`preset_stacks`: the loss is the mean of the first output."""

    name = "probe"

    def batch_loss(self, output: Any, batch: Any) -> torch.Tensor:
        while isinstance(output, (tuple, list)):
            output = output[0]
        if isinstance(output, dict):
            output = next(iter(output.values()))
        return output.float().mean()
