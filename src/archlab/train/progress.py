"""What the engine tells the outside world while it trains: the :class:`Reporter` protocol.

The engine never prints or draws. It hands every logged record and every picture a task makes
to a reporter; the CLI passes one with a progress bar, the runs layer adds one that draws
pictures into the run directory and one that mirrors records to TensorBoard. The default does
nothing, so ``train_model`` in a notebook is silent.
"""

from __future__ import annotations

from typing import Any


class Reporter:
    """No-op base; override what you need."""

    def start(self, total_steps: int, start_step: int, title: str) -> None:
        """Training is about to run steps ``start_step + 1 .. total_steps``."""

    def record(self, rec: dict[str, Any]) -> None:
        """A logged record (``kind`` is ``train``, ``eval`` or ``final``), as written to metrics.jsonl."""

    def picture(self, name: str, picture: Any) -> None:
        """A picture a task made (``tasks.pictures``), to be drawn as ``name``.png."""

    def close(self) -> None:
        """Training ended (normally or not)."""

    def stop_requested(self) -> bool:
        """Asked after each evaluation: True ends the run there, as early stopping does (the best
        weights are restored and evaluated). A search's pruner says so for a trial that is behind."""
        return False


class Reporters(Reporter):
    """Several reporters as one."""

    def __init__(self, *reporters: Reporter | None):
        self.reporters = [r for r in reporters if r is not None]

    def start(self, total_steps: int, start_step: int, title: str) -> None:
        for r in self.reporters:
            r.start(total_steps, start_step, title)

    def record(self, rec: dict[str, Any]) -> None:
        for r in self.reporters:
            r.record(rec)

    def picture(self, name: str, picture: Any) -> None:
        for r in self.reporters:
            r.picture(name, picture)

    def close(self) -> None:
        for r in self.reporters:
            r.close()

    def stop_requested(self) -> bool:
        return any(r.stop_requested() for r in self.reporters)
