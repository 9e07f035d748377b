"""Language modelling: next-token prediction with cross-entropy.

Inputs (B, T) token ids, target (B, T) the next tokens; the model returns logits (B, T, V) (or a
tuple whose first item is). Metrics: cross-entropy in nats per token (``loss``), ``perplexity``
= exp(loss) and ``bits_per_token`` = loss / ln 2 — bits per character for a character-level
vocabulary, the unit of the char-level literature. :func:`sample_text` generates text with the
model's own ``generate`` if it has one, else with a generic autoregressive sampler.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from archlab.data.base import DataBundle, Split
from archlab.errors import ConfigError, ShapeError
from archlab.layers.sampling import sample_next
from archlab.tasks.base import Task, output_tensor


class LanguageModelTask(Task):
    name = "language_modeling"

    def model_overrides(self, info, data: DataBundle) -> dict[str, Any]:
        vocab = info.get("vocab_size") or (len(info["vocab"]) if info.get("vocab") else None)
        return {"vocab": vocab} if vocab else {}

    def batch_loss(self, output, batch: Split) -> torch.Tensor:
        logits = output_tensor(output).float()
        t = batch.target
        if logits.ndim != 3 or logits.shape[:2] != t.shape:
            raise ShapeError(
                f"language modelling expects logits (B, T, V) matching target {tuple(t.shape)}; "
                f"got {tuple(logits.shape)}"
            )
        ls = self.cfg.label_smoothing if self.cfg else 0.0
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), t.reshape(-1), label_smoothing=ls)

    def loss(self, output, target):
        return self.batch_loss(output, Split(inputs=(), target=target))

    def make_metrics(self, device):
        return {}

    def update_metrics(self, metrics, output, batch) -> None:
        return None

    def eval_extras(self, output, batch: Split) -> dict[str, torch.Tensor]:
        logits = output_tensor(output).float()
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.target.reshape(-1), reduction="sum")
        return {"ce_sum": ce, "tokens": torch.tensor(float(batch.target.numel()), device=ce.device)}

    def finish_extras(self, sums) -> dict[str, float]:
        nats = float(sums["ce_sum"]) / float(sums["tokens"])
        return {"nats_per_token": nats, "perplexity": math.exp(min(nats, 700.0)), "bits_per_token": nats / math.log(2)}

    def predict(self, model, inputs):
        return output_tensor(model(*inputs)).argmax(-1)


@torch.no_grad()
def sample_text(
    model: torch.nn.Module,
    vocab: Sequence[str],
    prompt: str = "\n",
    n: int = 200,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    block_size: int | None = None,
) -> str:
    """Generate ``n`` tokens after ``prompt`` and decode them with ``vocab`` (index -> string).

    Uses ``model.generate(idx, n, temperature=..., top_k=..., generator=...)`` when the model
    has one; otherwise samples autoregressively from the logits of the last position with
    :func:`archlab.layers.sampling.sample_next`, feeding at most ``block_size`` tokens (default:
    the model config's ``block_size`` / ``max_seq_len``).

    Args:
        generator: the random generator to sample from (on the model's device).
        seed: convenience for ``generator``: a fresh local generator seeded with it. Neither
            touches torch's global RNG. With both None, sampling uses a generator seeded 0.
    """
    if temperature <= 0:
        raise ConfigError(f"temperature={temperature} must be > 0")
    stoi = {s: i for i, s in enumerate(vocab)}
    unknown = sorted({c for c in prompt if c not in stoi})
    if unknown:
        raise ConfigError(f"prompt characters {unknown} are not in the vocabulary")
    device = next(model.parameters()).device
    idx = torch.tensor([[stoi[c] for c in prompt]], dtype=torch.long, device=device)
    if generator is None:
        generator = torch.Generator(device=device).manual_seed(0 if seed is None else int(seed))
    was_training = model.training
    model.eval()
    try:
        if hasattr(model, "generate"):
            out = model.generate(idx, n, temperature=temperature, top_k=top_k, generator=generator)
        else:
            cfg = getattr(model, "config", None)
            block = block_size or getattr(cfg, "block_size", None) or getattr(cfg, "max_seq_len", None) or 256
            out = idx
            for _ in range(n):
                logits = output_tensor(model(out[:, -block:]))[:, -1, :]  # (1, T, V) -> (1, V)
                out = torch.cat([out, sample_next(logits, temperature, top_k, generator)], dim=1)
    finally:
        model.train(was_training)
    return "".join(vocab[i] for i in out[0, idx.shape[1] :].tolist())
