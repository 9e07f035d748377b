"""Training: the loop (:func:`fit`), its config, optimizers and schedules, precision, run state.

>>> result = archlab.fit("mlp_tabular", "breast_cancer", max_steps=200, lr=1e-3)
>>> result.metrics["test_accuracy"], result.run_dir
"""

from archlab.train.config import TrainConfig
from archlab.train.loop import NonFiniteLossError, RunResult, fit, resume

__all__ = ["TrainConfig", "RunResult", "NonFiniteLossError", "fit", "resume"]
