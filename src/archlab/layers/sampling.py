"""The one next-token sampler: temperature and top-k over last-position logits.

Used by every autoregressive model's ``generate`` (GPT, the seq2seq decoder, RNN language
models) and by :func:`archlab.tasks.language_model.sample_text`. Randomness comes only from the
``generator`` passed in (or torch's default generator when it is None); nothing here reseeds a
global RNG.
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.errors import ConfigError
from archlab.layers.checks import model_name


def check_sampling(model: nn.Module | str, max_new_tokens: int, temperature: float, top_k: int | None) -> None:
    """Raise ConfigError naming the argument when a sampling setting is out of range."""
    who = model_name(model)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ConfigError(f"{who}: max_new_tokens={max_new_tokens!r} must be an int >= 0")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature >= 0:
        raise ConfigError(f"{who}: temperature={temperature!r} must be >= 0 (0 = greedy)")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ConfigError(f"{who}: top_k={top_k!r} must be an int >= 1 or None")


def sample_next(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Next ids from last-position logits.

    Args:
        logits: (B, V) unnormalised scores of the next token.
        temperature: divides the logits; 0 picks the argmax (greedy, no randomness).
        top_k: keep only the k largest logits before sampling (None keeps all).
        generator: the random generator to draw from, for reproducible sampling.

    Returns:
        (B, 1) long ids.
    """
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1): the k-th largest
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)  # (B, V)
    return torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)
