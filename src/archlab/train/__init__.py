"""The training engine: its config, optimizers and schedules, precision, one step, state, the loop.

It takes objects (a module, a DataBundle, a task, a TrainConfig) and never names: resolving
names, adapting a model to the data and laying out runs is :mod:`archlab.runs`' job.
"""

from archlab.train.config import TrainConfig
from archlab.train.loop import NonFiniteLossError, RunResult, train_model
from archlab.train.progress import Reporter

__all__ = ["TrainConfig", "RunResult", "NonFiniteLossError", "Reporter", "train_model"]
