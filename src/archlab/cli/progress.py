"""The CLI's progress display: a rich progress bar on stderr (loss, last validation metrics,
throughput, ETA), refreshed only when the engine reports, so it adds nothing per step."""

from __future__ import annotations

import logging
from typing import Any

from archlab.train.progress import Reporter

log = logging.getLogger("archlab.cli")


class ProgressBar(Reporter):
    def __init__(self) -> None:
        self.progress = None
        self.stats = {"loss": "-", "metric": ""}

    def start(self, total_steps: int, start_step: int, title: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            refresh_per_second=4,
            transient=False,
        )
        self.progress.start()
        self.task_id = self.progress.add_task(title, total=total_steps, completed=start_step, stats="")

    def record(self, rec: dict[str, Any]) -> None:
        if rec.get("kind") == "train":
            self.stats["loss"] = f"loss {rec['loss']:.4g}" if "loss" in rec else self.stats["loss"]
            if "samples_per_s" in rec:
                self.stats["speed"] = f"{rec['samples_per_s']:,.0f} samples/s"
        elif rec.get("kind") == "eval":
            shown = [(k, v) for k, v in rec.items() if k.startswith(("val_", "test_")) and isinstance(v, float)][:3]
            self.stats["metric"] = " ".join(f"{k} {v:.4g}" for k, v in shown)
            log.debug("step %s: %s", rec.get("step"), self.stats["metric"])
        if self.progress is not None and rec.get("kind") in ("train", "eval"):
            self.progress.update(
                self.task_id, completed=rec.get("step", 0), stats=" | ".join(v for v in self.stats.values() if v)
            )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
