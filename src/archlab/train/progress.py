"""Progress display and metric sinks of a run.

:class:`Reporter` shows a rich progress bar on stderr (loss, the last validation metric,
throughput, ETA) unless ``quiet``, mirrors every record to TensorBoard when ``tensorboard`` is
importable, and logs evaluations through :mod:`logging`. It is refreshed only at logging
intervals, so it adds nothing to the per-step cost.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("archlab.train")


class Reporter:
    def __init__(self, total_steps: int, start_step: int, *, quiet: bool, tb_dir: Path | None, title: str):
        self.progress = None
        self.tb = None
        self.stats = {"loss": "-", "metric": ""}
        if not quiet:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                console=Console(stderr=True), refresh_per_second=4, transient=False,
            )
            self.progress.start()
            self.task_id = self.progress.add_task(title, total=total_steps, completed=start_step, stats="")
        if tb_dir is not None and importlib.util.find_spec("tensorboard") is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(tb_dir))

    def record(self, rec: dict[str, Any]) -> None:
        step = rec.get("step", 0)
        if self.tb is not None:
            for k, v in rec.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.tb.add_scalar(f"{rec.get('kind', 'train')}/{k}", v, step)
        if rec.get("kind") == "train":
            self.stats["loss"] = f"loss {rec['loss']:.4g}"
            if "samples_per_s" in rec:
                self.stats["speed"] = f"{rec['samples_per_s']:,.0f} samples/s"
        elif rec.get("kind") == "eval":
            shown = [(k, v) for k, v in rec.items() if k.startswith(("val_", "test_")) and isinstance(v, float)][:3]
            self.stats["metric"] = " ".join(f"{k} {v:.4g}" for k, v in shown)
            log.debug("step %s: %s", step, self.stats["metric"])
        if self.progress is not None:
            self.progress.update(self.task_id, completed=step, stats=" | ".join(v for v in self.stats.values() if v))

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None
