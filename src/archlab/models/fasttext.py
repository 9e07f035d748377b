"""fastText-style text classifier: the mean of token and hashed n-gram embeddings, then a linear head.

When to use: classifying text on a CPU or a small budget. A bag of n-grams keeps local word (or
character) order, trains in seconds per epoch and is often within a point or two of deep models;
it is the network to try before a Transformer, and the one that should at least match TF-IDF +
logistic regression.
Paper: Joulin, Grave, Bojanowski & Mikolov 2017, "Bag of Tricks for Efficient Text
Classification" (EACL).

Inputs are token ids ``(B, T)`` (long) and an optional padding mask ``(B, T)`` (bool, True at
padded positions), as for the Transformer encoders. Every n-gram of ``n = 2 .. ngrams``
consecutive tokens is hashed into one of ``buckets`` rows (the hashing trick, as in fastText);
an n-gram that touches padding is left out. The sequence vector is the mean of the embeddings of
its tokens and n-grams; dropout and one linear layer give the class logits.

Presets:
- ``fasttext_classifier`` - embeddings of 64, tokens + 2- and 3-grams in 2**16 buckets.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from archlab.config import ArchConfig, Depth, Size, Width
from archlab.layers.checks import check_index_range, check_tensor
from archlab.layers.embeddings import padded_tokens_example
from archlab.layers.params import ParamCount
from archlab.registry import register

#: an odd multiplier that spreads n-gram codes over the buckets (a polynomial rolling hash).
_HASH_MULT = 1_000_003


class FastTextConfig(ArchConfig):
    """Config of a bag-of-n-grams classifier (Joulin et al. 2017)."""

    vocab_size: Size = Field(256, ge=2, description="Token vocabulary (ids in [0, vocab_size)).")
    num_classes: Size = Field(2, ge=1, description="Classes of the head.")
    embed_dim: Width = Field(64, ge=1, description="Width of the token and n-gram embeddings.")
    ngrams: Depth = Field(3, ge=1, le=6, description="Longest n-gram embedded (1: tokens only).")
    buckets: Size = Field(2**16, ge=1, description="Hash buckets shared by the n-grams of every length.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the pooled vector.")
    max_seq_len: Size = Field(512, ge=1, description="Longest sequence accepted (for example inputs).")


class FastText(ParamCount, nn.Module):
    """Token ids ``(B, T)`` -> mean of token and hashed n-gram embeddings -> ``(B, num_classes)``."""

    #: the rate ``archlab design`` starts this model at instead of a range test's suggestion
    #: (capped at 1e-2 for deep networks): one linear layer over a mean of embeddings trains at
    #: rates a deep network cannot (fastText itself uses SGD at 0.1 to 1). With AdamW on
    #: shakespeare_genre, 100 steps reach 0.53 validation accuracy at 0.1 against 0.44 at 0.013.
    recipe_lr = 0.1

    def __init__(self, config: FastTextConfig):
        super().__init__()
        self.config = c = config
        rows = c.vocab_size + (c.buckets if c.ngrams > 1 else 0)
        self.embed = nn.Embedding(rows, c.embed_dim)
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.embed_dim, c.num_classes)
        nn.init.uniform_(self.embed.weight, -1.0 / c.embed_dim, 1.0 / c.embed_dim)  # as fastText
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
        return padded_tokens_example(batch_size, self.config.vocab_size, self.config.max_seq_len)

    def bag(self, tokens: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedding-table rows of the tokens and their n-grams, and which of them count: (B, N) each."""
        c = self.config
        rows, kept = [tokens], [keep]
        code, code_keep = tokens, keep
        for n in range(2, c.ngrams + 1):
            # n-grams starting at i: the (n-1)-gram at i extended by the token at i + n - 1.
            code = (code[:, :-1] * _HASH_MULT + tokens[:, n - 1 :] + n) % c.buckets  # (B, T - n + 1)
            code_keep = code_keep[:, :-1] & keep[:, n - 1 :]
            rows.append(code + c.vocab_size)
            kept.append(code_keep)
        return torch.cat(rows, dim=1), torch.cat(kept, dim=1)

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Classify sequences.

        Args:
            tokens: (B, T) long token ids in [0, vocab_size).
            padding_mask: optional (B, T) bool, True at padded positions (left out of the mean).

        Returns:
            (B, num_classes) logits.
        """
        c = self.config
        check_tensor(self, tokens, "B T", name="tokens", dtype="long")
        check_index_range(self, tokens, c.vocab_size)
        if padding_mask is None:
            keep = torch.ones_like(tokens, dtype=torch.bool)
        else:
            check_tensor(
                self, padding_mask, "B T", name="padding_mask", dtype="bool", B=tokens.shape[0], T=tokens.shape[1]
            )
            keep = ~padding_mask
        rows, kept = self.bag(tokens, keep)  # (B, N), (B, N)
        weight = kept.to(self.embed.weight.dtype).unsqueeze(-1)  # (B, N, 1)
        summed = (self.embed(rows) * weight).sum(dim=1)  # (B, N, D) -> (B, D)
        pooled = summed / weight.sum(dim=1).clamp_min(1.0)  # mean over the kept rows
        return self.head(self.drop(pooled))


register(
    "fasttext_classifier",
    family="fasttext",
    model=FastText,
    config=FastTextConfig,
    defaults=dict(embed_dim=64, ngrams=3, buckets=2**16),
    modalities=("text",),
    tasks=("classification",),
    description="fastText (Joulin et al. 2017): mean of token + hashed 2/3-gram embeddings (64) -> linear head",
    when_to_use="Text classification on a CPU or a small budget: the fast bag-of-n-grams network to try first",
    knobs={"embed_dim": "width"},
)
