"""The run-directory layout: paths, config and metrics files, and the checkpoint finders.

A run directory holds::

    config.yaml          model + data + task + train config
    data_info.json       the DataBundle's facts (classes, vocabulary, normalisation stats)
    metrics.jsonl        one JSON line per logged step and per evaluation
    last/  best/         checkpoints (see archlab.train.state for how they are written)
    curves.png           loss and metric curves
    final_metrics.json   metrics of the finished run

A checkpoint directory counts only once its ``COMPLETE`` marker exists; the marker records the
step and the SHA-256 of every file in the directory, and a checkpoint whose files do not match
is skipped (with a warning) in favour of an older one that does. This module only reads and
lays out; the trainer writes checkpoints, and analysis, benchmarking and export find them here.
:class:`RunDir` (and :class:`DesignDir` for a design directory) is the one place each file name
is spelled. Every file is parsed defensively: a malformed one is a :class:`CheckpointError` naming the file
and what is wrong in it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from archlab.errors import CheckpointError
from archlab.io import atomic_write_text, digest_problems

log = logging.getLogger(__name__)

COMPLETE = "COMPLETE"
#: Suffixes of a checkpoint's older twins: ``.old`` left by a kill mid-swap, ``.prev`` the
#: checkpoint before the current one, kept so a corrupt current one has a fallback.
TWINS = (".old", ".prev")


def is_complete(directory: Path) -> bool:
    return (directory / COMPLETE).is_file()


def read_marker(directory: Path) -> dict[str, Any]:
    """The parsed ``COMPLETE`` marker: ``{"step": int | None, "sha256": {file: digest} | None}``."""
    path = Path(directory) / COMPLETE
    try:
        marker = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise CheckpointError(f"{path} could not be read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not UTF-8 JSON ({exc})") from None
    if not isinstance(marker, dict):
        raise CheckpointError(f"{path}: expected a mapping with 'step' and 'sha256'; got {type(marker).__name__}")
    step = marker.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
        raise CheckpointError(f"{path}: field 'step' must be an integer >= 0 or null; got {step!r}")
    return {"step": step, "sha256": marker.get("sha256")}


def verify_checkpoint(directory: Path) -> int:
    """Check a complete checkpoint's files against the digests in its marker; return its step.

    A marker without digests (written by an older archlab) is accepted unverified.

    Raises:
        CheckpointError: no marker, a malformed one, or a file missing or changed (named).
    """
    directory = Path(directory)
    if not is_complete(directory):
        raise CheckpointError(f"{directory} is not a complete checkpoint (no {COMPLETE} marker)")
    marker = read_marker(directory)
    if marker["sha256"] is None:
        log.debug("%s records no digests (older archlab); using it unverified", directory)
    else:
        problems = digest_problems(directory, marker["sha256"])
        if problems:
            raise CheckpointError(f"checkpoint {directory} failed its integrity check: " + "; ".join(problems))
    return marker["step"] or 0


def find_checkpoint(run_dir: Path, name: str = "last") -> Path | None:
    """The newest complete checkpoint ``name`` (or an older twin, see :data:`TWINS`) whose files
    verify; a checkpoint that does not verify is skipped with a warning."""
    return _find(Path(run_dir), name)[0]


def _find(run_dir: Path, name: str) -> tuple[Path | None, list[str]]:
    """:func:`find_checkpoint`, and why each candidate passed over was skipped."""
    best: tuple[int, Path] | None = None
    skipped = []
    for cand in (run_dir / name, *(run_dir / f"{name}{t}" for t in TWINS)):
        if not cand.is_dir():
            continue
        if not is_complete(cand):
            if cand.name == name:  # a twin without a marker is a write in progress, not a loss
                skipped.append(f"{name}/ has no {COMPLETE} marker (its write was interrupted)")
            continue
        try:
            step = verify_checkpoint(cand)
        except CheckpointError as exc:
            log.warning("skipping checkpoint %s: %s", cand, exc)
            skipped.append(str(exc).replace(f"{cand}/", "").replace(str(cand), f"{cand.name}/"))
            continue
        if best is None or step > best[0]:
            best = (step, cand)
    return (None if best is None else best[1]), skipped


class RunDir:
    """Paths and writers of one run directory, and the one place its file names are spelled.

    The names are class constants (``RunDir.FINAL_METRICS``) for code that holds only a path;
    the properties (``run.final_metrics_path``) join them to this run's directory. A group of
    runs (``--cv`` / ``--seeds``, :mod:`archlab.runs.cv`) lays its parent directory out with
    the group names below; each member is an ordinary run directory.
    """

    CONFIG = "config.yaml"
    DATA_INFO = "data_info.json"
    METRICS = "metrics.jsonl"
    FINAL_METRICS = "final_metrics.json"
    CURVES = "curves.png"
    #: what ``archlab generate`` draws into the run by default
    SAMPLES = "samples.png"
    #: a run's report, as the MLflow mirror uploads it
    REPORT = "report.html"
    #: the torchrun launch that started the run (:mod:`archlab.runs.launch`)
    LAUNCH = "launch.json"
    #: the MLflow run this one is mirrored to, and the TensorBoard logs (:mod:`archlab.runs.tracking`)
    MLFLOW = "mlflow.json"
    TENSORBOARD = "tb"
    #: checkpoint directories: the latest, and the best on the monitored metric
    LAST = "last"
    BEST = "best"

    # A group's parent directory.
    GROUP = "group.json"
    CV_SUMMARY = "cv_summary.json"
    SEEDS_SUMMARY = "seeds_summary.json"
    #: a group's kind (``group.json``'s ``kind``) -> its summary file
    SUMMARIES: Mapping[str, str] = MappingProxyType({"cv": CV_SUMMARY, "seeds": SEEDS_SUMMARY})
    #: whether the members trained as one vmapped stack, and why not
    STACK = "stack.json"
    #: the stack's checkpoints (``stack/last/``), and the files in one of them
    STACK_DIR = "stack"
    STACK_TENSORS = "stack.safetensors"
    STACK_META = "stack.json"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def last(self) -> Path:
        return self.path / self.LAST

    @property
    def best(self) -> Path:
        return self.path / self.BEST

    @property
    def metrics_file(self) -> Path:
        return self.path / self.METRICS

    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def data_info_path(self) -> Path:
        return self.path / self.DATA_INFO

    @property
    def final_metrics_path(self) -> Path:
        return self.path / self.FINAL_METRICS

    @property
    def curves_path(self) -> Path:
        return self.path / self.CURVES

    def picture_path(self, name: str) -> Path:
        """Where a picture the task reports as ``name`` is drawn."""
        return self.path / f"{name}.png"

    @property
    def has_config(self) -> bool:
        """Whether a run was laid out here (its ``config.yaml`` is written before the first step)."""
        return self.config_path.is_file()

    def write_config(self, config: dict[str, Any]) -> None:
        import yaml

        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.config_path, yaml.safe_dump(config, sort_keys=False))

    def read_config(self) -> dict[str, Any]:
        """The run's ``config.yaml`` as a mapping (safe YAML: no tags that build objects).

        Raises:
            CheckpointError: the file is missing, not UTF-8, not valid YAML (naming the line),
                uses a ``!!python/...`` or other unsafe tag, or is not a mapping.
        """
        import yaml

        path = self.config_path
        if not path.is_file():
            raise CheckpointError(f"no {self.CONFIG} in {self.path} (is it an archlab run directory?)")
        try:
            data = yaml.safe_load(path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise CheckpointError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except yaml.YAMLError as exc:
            raise CheckpointError(f"{path} is not valid safe YAML: {_yaml_problem(exc)}") from None
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise CheckpointError(
                f"{path}: expected a mapping of sections (model, data, task, train); got {type(data).__name__}"
            )
        return data

    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.metrics_file, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        """Complete records of metrics.jsonl: JSON objects whose ``step`` (if any) is a number.

        A line torn by a kill is skipped; so is any other line that is not such a record (not
        UTF-8, not JSON, not an object), with one warning naming the file and the count.
        """
        if not self.metrics_file.is_file():
            return []
        out, skipped = [], 0
        lines = self.metrics_file.read_bytes().splitlines()
        for i, raw in enumerate(lines):
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                record = None
            step = record.get("step", 0) if isinstance(record, dict) else None
            if isinstance(step, bool) or not isinstance(step, (int, float)):
                skipped += i < len(lines) - 1  # the last line may be torn by a kill: not worth a warning
                continue
            out.append(record)
        if skipped:
            log.warning("%s: skipped %d line(s) that are not metric records", self.metrics_file, skipped)
        return out

    def clean_partial(self) -> None:
        """Remove what a kill left behind: temp checkpoint dirs, and ``.old`` twins no longer needed."""
        for name in (self.LAST, self.BEST):
            tmp = self.path / f".{name}.tmp"
            if tmp.exists():
                shutil.rmtree(tmp)
            old, cur = self.path / f"{name}.old", self.path / name
            if old.exists():
                if is_complete(cur):
                    shutil.rmtree(old)
                else:  # killed mid-swap: the old one is the checkpoint
                    if cur.exists():
                        shutil.rmtree(cur)
                    os.replace(old, cur)

    def truncate_metrics(self, step: int) -> None:
        """Keep only records up to ``step`` (those after the resumed checkpoint are redone)."""
        kept = [r for r in self.read_metrics() if r.get("step", 0) <= step]
        atomic_write_text(self.metrics_file, "".join(json.dumps(r) + "\n" for r in kept))


class DesignDir:
    """The layout of a design directory (:mod:`archlab.runs.design`): the one place its file
    names are spelled. Its runs (``trials/tNNN/``, ``winner/``) are ordinary run directories
    (:class:`RunDir`).
    """

    #: the manifest: arguments, and each step's state and result (rewritten after every step)
    MANIFEST = "design.json"
    #: the search's default Optuna storage (SQLite)
    STUDY_DB = "study.db"
    RECOMMENDATION = "recommendation.json"
    SIZED = "sized.json"
    TRIALS = "trials"
    WINNER = "winner"
    BENCH = "bench.json"
    EXPORT = "export.json"
    EXPORT_DIR = "export"
    REPORT = "report.html"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def manifest_path(self) -> Path:
        return self.path / self.MANIFEST


def _yaml_problem(exc: Exception) -> str:
    """One line from a YAML error: what is wrong and where (line, column)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{what}{where}"


@dataclass(frozen=True)
class FinalWeights:
    """Which checkpoint answers for a run's final model, and why when it is not the one the run
    ended with (a fallback: older weights than the run's result).

    Attributes:
        path: the checkpoint directory that answers.
        step: its step.
        wanted: ``"best"`` or ``"last"``, the checkpoint holding the weights the run ended with.
        fallback_reason: None when ``path`` is ``wanted``; else why ``wanted`` could not answer.
    """

    path: Path
    step: int
    wanted: str
    fallback_reason: str | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def is_fallback(self) -> bool:
        return self.fallback_reason is not None

    def describe(self) -> str:
        """One line: which weights answered, and for a fallback why (said first by every command)."""
        if not self.is_fallback:
            return f"weights: {self.name}/ (step {self.step}), the run's final model"
        return (
            f"FALLBACK weights: {self.name}/ (step {self.step}), not the run's final model {self.wanted}/: "
            f"{self.fallback_reason}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.name,
            "path": str(self.path),
            "step": self.step,
            "wanted": self.wanted,
            "fallback": self.is_fallback,
            "fallback_reason": self.fallback_reason,
        }


def _ended_with(run_dir: Path, saved: dict[str, Any]) -> str:
    """``best`` or ``last``: what the run's final_metrics.json says it ended with; for a run not
    finished, best/ when it restores its best weights (the default) and has written one."""
    try:
        weights = json.loads((run_dir / RunDir.FINAL_METRICS).read_text(encoding="utf-8")).get("weights")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        weights = None
    if weights in ("best", "last"):
        return weights
    wrote_best = any((run_dir / f"best{t}").is_dir() for t in ("", *TWINS))
    return "best" if (saved.get("train") or {}).get("restore_best", True) and wrote_best else "last"


def final_weights(run_dir: Path, saved: dict[str, Any]) -> FinalWeights | None:
    """The checkpoint that answers for a run's final model (None: no complete one verifies).

    The run's own final checkpoint (see :func:`_ended_with`) when it verifies; else an older twin
    of it, else the other checkpoint, marked as a fallback with the reason.
    """
    run_dir = Path(run_dir)
    wanted = _ended_with(run_dir, saved)
    found, skipped = _find(run_dir, wanted)
    if found is None:
        other = "last" if wanted == "best" else "best"
        found = find_checkpoint(run_dir, other)
        skipped = skipped or [f"{wanted}/ is missing"]
    if found is None:
        return None
    why = None if found.name == wanted else "; ".join(skipped) or f"{wanted}/ holds an older step than {found.name}/"
    weights = FinalWeights(found, int(read_marker(found)["step"] or 0), wanted, why)
    if weights.is_fallback:
        log.warning("%s: %s", run_dir, weights.describe())
    return weights


def final_checkpoint(run_dir: Path, saved: dict[str, Any]) -> Path | None:
    """The path of :func:`final_weights` (a fallback is logged there as a warning)."""
    found = final_weights(run_dir, saved)
    return None if found is None else found.path
