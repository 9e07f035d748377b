"""Multi-head attention and the transformer block, on ``F.scaled_dot_product_attention``.

Shared by the transformer family (encoder, decoder, encoder-decoder) and ViT. Conventions:

- Tensors are batch-first: ``(B, T, C)`` with ``C = d_model``; heads split as
  ``(B, nh, T, hs)`` with ``hs = C // nh``.
- A **padding mask** is bool ``(B, T)`` with **True at padded positions** (as
  ``nn.MultiheadAttention``'s ``key_padding_mask``): those keys are never attended to.
- Boolean attention masks passed to SDPA are ``True`` where attention is *allowed*.
- A :class:`KVCache` holds each layer's past keys/values so a decoder can be fed one new token
  at a time (the cost of a step no longer grows with the whole sequence's recomputation).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import ShapeError
from archlab.layers.embeddings import apply_rotary
from archlab.layers.registry import ActLayer, NormLayer

# -- KV cache -----------------------------------------------------------------------------------


class LayerKVCache:
    """Keys and values of one self-attention layer, preallocated to ``max_len`` positions."""

    def __init__(self, max_len: int):
        self.max_len = max_len
        self.length = 0
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store new (B, nh, T, hs) keys/values; return all cached ones so far."""
        B, nh, T, hs = k.shape
        end = self.length + T
        if end > self.max_len:
            raise ShapeError(f"KV cache holds at most {self.max_len} positions; got {end}")
        if self.k is None:
            self.k = k.new_empty(B, nh, self.max_len, hs)
            self.v = v.new_empty(B, nh, self.max_len, hs)
        self.k[:, :, self.length : end] = k
        self.v[:, :, self.length : end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]


class StaticKV:
    """Keys and values of one cross-attention layer: computed once from the encoder output."""

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None


class KVCache:
    """Per-layer caches for a decoder stack (self-attention, and cross-attention if any)."""

    def __init__(self, n_layers: int, max_len: int, cross: bool = False):
        self.self_attn = [LayerKVCache(max_len) for _ in range(n_layers)]
        self.cross_attn = [StaticKV() for _ in range(n_layers)] if cross else [None] * n_layers

    @property
    def length(self) -> int:
        """Positions cached so far (the offset of the next token)."""
        return self.self_attn[0].length if self.self_attn else 0


# -- masks --------------------------------------------------------------------------------------


def attention_mask(
    q_len: int,
    k_len: int,
    *,
    causal: bool,
    padding_mask: torch.Tensor | None = None,
    device: torch.device | None = None,
) -> tuple[torch.Tensor | None, bool]:
    """The ``(attn_mask, is_causal)`` pair for SDPA.

    Args:
        q_len: number of queries (new tokens).
        k_len: number of keys (cached + new tokens); queries are the last ``q_len`` of them.
        causal: whether query i may only see keys up to its own position.
        padding_mask: (B, k_len) bool, True at padded keys.
        device: where to build the mask.

    Returns:
        ``attn_mask`` (B or 1, 1, q_len, k_len) bool, True = may attend, or None; and
        ``is_causal``, True when SDPA's own causal path can be used instead of a mask.
    """
    need_causal = causal and q_len > 1
    if padding_mask is None:
        if not need_causal:
            return None, False
        if q_len == k_len:
            return None, True  # SDPA's fused causal path
    mask = None
    if need_causal:
        # query i sits at absolute position k_len - q_len + i and sees keys j <= that position
        mask = torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(diagonal=k_len - q_len)
        mask = mask[None, None]  # (T, S) -> (1, 1, T, S)
    if padding_mask is not None:
        keep = ~padding_mask[:, None, None, :]  # (B, S) -> (B, 1, 1, S)
        mask = keep if mask is None else mask & keep
        if need_causal:
            # a (left-)padded query may have no visible key; letting every query see itself keeps
            # its softmax finite (a NaN there would reach other rows through 0 * NaN in SDPA)
            own = torch.ones(q_len, k_len, dtype=torch.bool, device=device)
            own = own.tril(k_len - q_len) & own.triu(k_len - q_len)  # query i <-> key k_len - q_len + i
            mask = mask | own
    return mask, False


# -- attention ----------------------------------------------------------------------------------


class MultiHeadAttention(nn.Module):
    """Multi-head attention; self-attention uses one fused QKV projection, cross-attention a
    query projection and a fused key/value projection of the memory."""

    def __init__(self, d_model: int, n_heads: int, *, dropout: float = 0.0, bias: bool = True, cross: bool = False):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.cross = cross
        self.dropout = dropout
        if cross:
            self.q = nn.Linear(d_model, d_model, bias=bias)
            self.kv = nn.Linear(d_model, 2 * d_model, bias=bias)
        else:
            self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.proj = nn.Linear(d_model, d_model, bias=bias)  # output projection (a residual branch)
        self.resid_dropout = nn.Dropout(dropout)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        B, T, C = t.shape
        return t.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, T, C) -> (B, nh, T, hs)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        *,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: LayerKVCache | StaticKV | None = None,
    ) -> torch.Tensor:
        """Attend from ``x`` (B, T, C) to itself, or to ``memory`` (B, S, C) if cross.

        ``attn_mask`` is bool (B or 1, 1, T, S), True = may attend; ``rope`` is (cos, sin) of
        shape (T, hs) for the new positions; ``cache`` extends keys/values with past ones.
        Returns (B, T, C).
        """
        B, T, C = x.shape
        if self.cross:
            q = self._heads(self.q(x))  # (B, nh, T, hs)
            if isinstance(cache, StaticKV) and cache.k is not None:
                k, v = cache.k, cache.v
            else:
                k, v = self.kv(memory).split(C, dim=2)  # (B, S, 2C) -> 2 x (B, S, C)
                k, v = self._heads(k), self._heads(v)  # (B, S, C) -> (B, nh, S, hs)
                if isinstance(cache, StaticKV):
                    cache.k, cache.v = k, v
        else:
            q, k, v = self.qkv(x).split(C, dim=2)  # (B, T, 3C) -> 3 x (B, T, C)
            q, k, v = self._heads(q), self._heads(k), self._heads(v)  # -> (B, nh, T, hs)
            if rope is not None:
                cos, sin = rope
                q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
            if isinstance(cache, LayerKVCache):
                k, v = cache.append(k, v)  # (B, nh, S, hs) with S = cached + T
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            is_causal=is_causal,
            dropout_p=self.dropout if self.training else 0.0,
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, nh, T, hs) -> (B, T, C)
        return self.resid_dropout(self.proj(y))


class FeedForward(nn.Module):
    """Position-wise MLP: Linear -> activation -> Linear -> dropout (GPT-2 / BERT layout)."""

    def __init__(
        self, d_model: int, d_ff: int, *, act_layer: ActLayer = nn.GELU, dropout: float = 0.0, bias: bool = True
    ):
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_ff, bias=bias)
        self.act = act_layer()
        self.fc2 = nn.Linear(d_ff, d_model, bias=bias)  # a residual branch's last projection
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.act(self.fc1(x))))  # (B, T, C) -> (B, T, d_ff) -> (B, T, C)


class TransformerBlock(nn.Module):
    """Self-attention [+ cross-attention] + MLP, each a residual branch with a norm.

    ``norm_first=True`` is pre-norm (GPT-2, ViT: ``x + f(LN(x))``, stable for deep stacks);
    ``False`` is post-norm (original Transformer, BERT: ``LN(x + f(x))``). ``norm_layer(width)``
    builds each norm (``nn.LayerNorm``, ``nn.RMSNorm`` for T5/LLaMA, or a partial with ``eps``);
    ``act_layer()`` the MLP's activation.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        *,
        dropout: float = 0.0,
        norm_first: bool = True,
        act_layer: ActLayer = nn.GELU,
        norm_layer: NormLayer = nn.LayerNorm,
        bias: bool = True,
        cross_attention: bool = False,
    ):
        super().__init__()
        self.norm_first = norm_first
        self.attn = MultiHeadAttention(d_model, n_heads, dropout=dropout, bias=bias)
        self.norm1 = norm_layer(d_model)
        self.cross_attn = None
        if cross_attention:
            self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout, bias=bias, cross=True)
            self.norm_cross = norm_layer(d_model)
        self.mlp = FeedForward(d_model, d_ff, act_layer=act_layer, dropout=dropout, bias=bias)
        self.norm2 = norm_layer(d_model)

    def _residual(self, x: torch.Tensor, norm: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        if self.norm_first:
            return x + fn(norm(x))
        return norm(x + fn(x))

    def forward(
        self,
        x: torch.Tensor,
        *,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: LayerKVCache | None = None,
        memory: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        cross_cache: StaticKV | None = None,
    ) -> torch.Tensor:
        """(B, T, C) -> (B, T, C). ``memory`` (B, S, C) is the encoder output for cross-attention,
        ``memory_mask`` its bool (B, 1, 1, S) mask, True = may attend."""
        x = self._residual(
            x, self.norm1, lambda h: self.attn(h, attn_mask=attn_mask, is_causal=is_causal, rope=rope, cache=cache)
        )
        if self.cross_attn is not None:
            x = self._residual(
                x, self.norm_cross, lambda h: self.cross_attn(h, memory, attn_mask=memory_mask, cache=cross_cache)
            )
        return self._residual(x, self.norm2, self.mlp)
