"""Transformers over token sequences: encoder (BERT), decoder-only (GPT), encoder-decoder (T5/BART).

When to use: text understanding -> encoder transformer (BERT); text/code
generation -> decoder transformer (GPT); sequence-to-sequence such as translation ->
encoder-decoder (T5/BART); long-range dependencies and scalable transfer. Common practice:
warmup + cosine learning rate, weight decay on weights only (not LayerNorm/bias), gradient
clipping, and masks on padding so the model never learns from pad tokens.

Paper: Vaswani et al. 2017, "Attention Is All You Need"; Devlin et al. 2019 (BERT); Radford et
al. 2019 (GPT-2); Raffel et al. 2020 (T5). Blocks are in :mod:`archlab.layers.attention`,
positions in :mod:`archlab.layers.embeddings`, shared config fields in
:mod:`archlab.models.transformer_blocks`.

Padding masks are bool (B, T) with **True at padded positions**.

Presets:
- ``transformer_encoder_256`` - a small post-norm text classifier (``TransformerPyTorch``): vocab
  1000, d_model 256, 8 heads, 3 layers, d_ff 512, ReLU, no positions, mean pooling, 10 classes
  (1,839,882 parameters). It attends across tokens: a common slip hands (B, T, D) to an
  ``nn.MultiheadAttention`` built without ``batch_first=True``, which attends across the batch.
- ``transformer_encoder_512`` - a pre-norm ``TransformerBlock`` (Xiong et al. 2020; d_model 512, 8 heads,
  d_ff 2048, ReLU, dropout 0.1), six of them, learned positions, [CLS] pooling.
- ``transformer_tagger`` - a small encoder with one output per token (tagging, e.g. NER).
- ``bert_tiny`` / ``bert_base`` - BERT (Devlin et al. 2019; bert-base-uncased): post-norm, token
  type embeddings, embedding LayerNorm, tanh pooler on [CLS]. Backbones have 4,385,920 and
  109,482,240 parameters, as Hugging Face's ``BertModel``.
- ``gpt_nano`` - nanoGPT's shakespeare-char baby GPT: 6 layers, 6 heads, 384 wide, block 256,
  65 characters, dropout 0.2, no biases (10.65M parameters without the position table, as
  nanoGPT prints).
- ``gpt2_small`` - GPT-2 124M: 12 layers, 768 wide, vocab 50257, block 1024, tied embeddings
  (124,439,808 parameters).
- ``t5_small`` - an encoder-decoder with T5-small's sizes (6 + 6 layers, 512 wide, 8 heads,
  d_ff 2048, vocab 32128, shared tied embeddings) and T5's RMSNorm (eps 1e-6; a scale, no
  shift); unlike T5 it uses learned absolute positions instead of relative position buckets
  and keeps biases in its Linear layers.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from archlab.config import Depth, Size
from archlab.errors import ShapeError
from archlab.layers.attention import KVCache, attention_mask
from archlab.layers.checks import check_index_range, check_max, check_tensor, model_name
from archlab.layers.embeddings import padded_tokens_example
from archlab.layers.params import ParamCount
from archlab.layers.sampling import check_sampling, sample_next
from archlab.models.transformer_blocks import (
    SequenceConfig,
    TokenEmbedding,
    TransformerStack,
    init_transformer,
)
from archlab.registry import register


def _check_tokens(
    model: nn.Module, tokens, vocab_size: int, max_len: int, *, name: str = "tokens", offset: int = 0
) -> torch.Tensor:
    check_tensor(model, tokens, "B T", name=name, dtype="long")
    check_index_range(model, tokens, vocab_size, name=name)
    check_max(model, offset + tokens.shape[1], max_len, f"{name} length T (max_seq_len)")
    return tokens


def _check_padding(model: nn.Module, mask, tokens: torch.Tensor, *, name: str = "padding_mask"):
    if mask is None:
        return None
    B, T = tokens.shape
    check_tensor(model, mask, "B T", name=name, dtype="bool", B=B, T=T)
    # A value check: skipped on meta and while a graph is traced (torch.compile / torch.export).
    if mask.device.type != "meta" and not torch.compiler.is_compiling() and bool(mask.all(dim=1).any()):
        raise ShapeError(
            f"{model_name(model)} expects every sequence to keep at least one token in {name} "
            f"(True marks padding); got a row that is all padding"
        )
    return mask


# =============================================================================================
# Encoder (BERT-like)
# =============================================================================================


class EncoderConfig(SequenceConfig):
    """Config of a bidirectional transformer encoder with a classification head."""

    pool: Literal["cls", "mean", "none"] = Field(
        "cls",
        description="Sequence output from the first ([CLS]) token, the mean over unpadded tokens, "
        "or 'none' for one output per token (tagging).",
    )
    num_classes: Size = Field(2, ge=1, description="Classes of the head (per sequence, or per token if pool='none').")
    type_vocab_size: Size = Field(0, ge=0, description="Segment (token type) ids; BERT uses 2, 0 turns them off.")
    embed_norm: bool = Field(False, description="LayerNorm on the embeddings (BERT, a post-norm model).")
    pooler: bool = Field(False, description="BERT's pooler: Linear + tanh on the pooled vector before the head.")


class TransformerEncoder(ParamCount, nn.Module):
    """Token ids -> bidirectional transformer -> pooled (or per-token) class logits."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = c = config
        self.embed = TokenEmbedding(c, type_vocab_size=c.type_vocab_size, norm=c.embed_norm)
        self.stack = TransformerStack(c, c.n_layers)
        self.pooler = (
            nn.Sequential(nn.Linear(c.d_model, c.d_model), nn.Tanh()) if c.pooler and c.pool != "none" else None
        )
        self.head = nn.Linear(c.d_model, c.num_classes)
        init_transformer(self, c.init)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
        return padded_tokens_example(batch_size, self.config.vocab_size, self.config.max_seq_len)

    def forward_features(
        self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None, token_types: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Contextual token vectors: (B, T) ids -> (B, T, d_model)."""
        c = self.config
        _check_tokens(self, tokens, c.vocab_size, c.max_seq_len)
        _check_padding(self, padding_mask, tokens)
        if token_types is not None:
            if not c.type_vocab_size:
                raise ShapeError(
                    f"{model_name(self)} got token_types but has type_vocab_size=0 (no segment embeddings)"
                )
            check_tensor(
                self, token_types, "B T", name="token_types", dtype="long", B=tokens.shape[0], T=tokens.shape[1]
            )
            check_index_range(self, token_types, c.type_vocab_size, name="token_types")
        x, rope = self.embed(tokens, token_types=token_types)
        T = tokens.shape[1]
        mask, _ = attention_mask(T, T, causal=False, padding_mask=padding_mask, device=tokens.device)
        return self.stack(x, attn_mask=mask, rope=rope)

    def forward(
        self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None, token_types: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Classify sequences (or tag tokens).

        Args:
            tokens: (B, T) long token ids in [0, vocab_size), T <= max_seq_len. With pool='cls'
                the first token should be a [CLS] token.
            padding_mask: optional (B, T) bool, True at padded positions (never attended to,
                left out of mean pooling).
            token_types: optional (B, T) long segment ids (needs type_vocab_size > 0).

        Returns:
            (B, num_classes) logits, or (B, T, num_classes) with pool='none'.
        """
        h = self.forward_features(tokens, padding_mask, token_types)  # (B, T, C)
        pool = self.config.pool
        if pool == "none":
            return self.head(h)  # (B, T, C) -> (B, T, classes)
        if pool == "cls":
            h = h[:, 0]  # (B, T, C) -> (B, C)
        elif padding_mask is None:
            h = h.mean(dim=1)
        else:
            keep = (~padding_mask).unsqueeze(-1).to(h.dtype)  # (B, T, 1)
            h = (h * keep).sum(dim=1) / keep.sum(dim=1)  # masked mean: (B, T, C) -> (B, C)
        if self.pooler is not None:
            h = self.pooler(h)
        return self.head(h)


# =============================================================================================
# Decoder-only (GPT-like)
# =============================================================================================


class DecoderConfig(SequenceConfig):
    """Config of a causal (decoder-only) language model."""

    tie_embeddings: bool = Field(
        True,
        description="Share the token embedding with the output layer (GPT-2); saves vocab_size * d_model parameters.",
    )


class TransformerDecoder(ParamCount, nn.Module):
    """GPT: token ids -> causal transformer -> next-token logits at every position."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.config = c = config
        self.embed = TokenEmbedding(c)
        self.stack = TransformerStack(c, c.n_layers)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        if c.tie_embeddings:
            self.lm_head.weight = self.embed.tok.weight  # one (vocab, C) tensor, saved once
        init_transformer(self, c.init, residual_layers=c.n_layers)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        T = min(16, self.config.max_seq_len)
        return (torch.randint(0, self.config.vocab_size, (batch_size, T)),)

    def new_cache(self) -> KVCache:
        """An empty KV cache for :meth:`forward` / :meth:`generate`."""
        return KVCache(self.config.n_layers, self.config.max_seq_len)

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Next-token logits.

        Args:
            tokens: (B, T) long ids in [0, vocab_size); with a ``cache``, only the new tokens,
                and cached + new length must stay <= max_seq_len.
            cache: optional :class:`KVCache`; filled with this call's keys/values.

        Returns:
            (B, T, vocab_size) logits; position t predicts token t + 1.
        """
        c = self.config
        offset = cache.length if cache is not None else 0
        _check_tokens(self, tokens, c.vocab_size, c.max_seq_len, offset=offset)
        T = tokens.shape[1]
        x, rope = self.embed(tokens, offset)  # (B, T, C)
        mask, is_causal = attention_mask(T, offset + T, causal=True, device=tokens.device)
        x = self.stack(x, attn_mask=mask, is_causal=is_causal, rope=rope, cache=cache)
        return self.lm_head(x)  # (B, T, C) -> (B, T, vocab)

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        use_cache: bool = True,
        *,
        generator: torch.Generator | None = None,
        return_logits: bool = False,
    ):
        """Continue ``idx`` (B, T) by ``max_new_tokens`` tokens, nanoGPT style.

        Args:
            idx: (B, T) long prompt ids.
            max_new_tokens: tokens to append.
            temperature: divides the logits; 0 picks the argmax (greedy).
            top_k: sample only among the k most likely tokens.
            use_cache: reuse past keys/values (one token per step) instead of recomputing the
                whole context; the results are the same. Past ``max_seq_len`` the context is
                cropped to the last ``max_seq_len`` tokens and the cache rebuilt.
            generator: random generator for reproducible sampling.
            return_logits: also return each step's last-position logits (B, max_new_tokens, V).

        Returns:
            (B, T + max_new_tokens) ids, and the logits if ``return_logits``.
        """
        c = self.config
        check_sampling(self, max_new_tokens, temperature, top_k)
        check_tensor(self, idx, "B T", name="idx", dtype="long")
        cache, steps = None, []
        for _ in range(max_new_tokens):
            if not use_cache:
                logits = self(idx[:, -c.max_seq_len :])
            elif cache is None or cache.length >= c.max_seq_len:
                cache = self.new_cache()  # (re)fill from the cropped context
                logits = self(idx[:, -c.max_seq_len :], cache)
            else:
                logits = self(idx[:, -1:], cache)  # only the newest token
            last = logits[:, -1, :]  # (B, T, V) -> (B, V)
            steps.append(last)
            idx = torch.cat([idx, sample_next(last, temperature, top_k, generator)], dim=1)
        if return_logits:
            empty = idx.new_zeros(idx.shape[0], 0, c.vocab_size, dtype=torch.float32)
            return idx, torch.stack(steps, dim=1) if steps else empty
        return idx


# =============================================================================================
# Encoder-decoder (T5 / BART-like)
# =============================================================================================


class Seq2SeqConfig(SequenceConfig):
    """Config of an encoder-decoder transformer with one shared vocabulary."""

    n_layers: Depth = Field(6, ge=1, description="Encoder blocks.")
    n_decoder_layers: Depth = Field(6, ge=1, description="Decoder blocks (causal self-attention + cross-attention).")
    tie_embeddings: bool = Field(
        True, description="Share the token table of encoder, decoder and output layer (T5, BART)."
    )


class TransformerSeq2Seq(ParamCount, nn.Module):
    """Source ids -> encoder; target ids -> causal decoder attending to the encoder -> logits."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.config = c = config
        self.src_embed = TokenEmbedding(c)
        self.tgt_embed = TokenEmbedding(c, shared=self.src_embed.tok if c.tie_embeddings else None)
        self.encoder = TransformerStack(c, c.n_layers)
        self.decoder = TransformerStack(c, c.n_decoder_layers, cross_attention=True)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        if c.tie_embeddings:
            self.lm_head.weight = self.src_embed.tok.weight
        init_transformer(self, c.init)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        return (
            torch.randint(0, c.vocab_size, (batch_size, min(12, c.max_seq_len))),
            torch.randint(0, c.vocab_size, (batch_size, min(8, c.max_seq_len))),
        )

    def encode(self, src_tokens: torch.Tensor, src_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, S) source ids -> (B, S, d_model) encoder output ("memory")."""
        c = self.config
        _check_tokens(self, src_tokens, c.vocab_size, c.max_seq_len, name="src_tokens")
        _check_padding(self, src_padding_mask, src_tokens, name="src_padding_mask")
        x, rope = self.src_embed(src_tokens)
        S = src_tokens.shape[1]
        mask, _ = attention_mask(S, S, causal=False, padding_mask=src_padding_mask, device=src_tokens.device)
        return self.encoder(x, attn_mask=mask, rope=rope)

    def decode(
        self,
        tgt_tokens: torch.Tensor,
        memory: torch.Tensor,
        src_padding_mask: torch.Tensor | None = None,
        tgt_padding_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """(B, T) target ids + (B, S, C) memory -> (B, T, vocab) logits (causal in the target)."""
        c = self.config
        offset = cache.length if cache is not None else 0
        _check_tokens(self, tgt_tokens, c.vocab_size, c.max_seq_len, name="tgt_tokens", offset=offset)
        _check_padding(self, tgt_padding_mask, tgt_tokens, name="tgt_padding_mask")
        T = tgt_tokens.shape[1]
        x, rope = self.tgt_embed(tgt_tokens, offset)
        pad = tgt_padding_mask
        if pad is not None and offset:  # cached keys are never padding here
            pad = torch.cat([pad.new_zeros(pad.shape[0], offset), pad], dim=1)
        mask, is_causal = attention_mask(T, offset + T, causal=True, padding_mask=pad, device=tgt_tokens.device)
        memory_mask = None if src_padding_mask is None else ~src_padding_mask[:, None, None, :]  # (B, 1, 1, S)
        x = self.decoder(
            x, attn_mask=mask, is_causal=is_causal, rope=rope, cache=cache, memory=memory, memory_mask=memory_mask
        )
        return self.lm_head(x)

    def forward(
        self,
        src_tokens: torch.Tensor,
        tgt_tokens: torch.Tensor,
        src_padding_mask: torch.Tensor | None = None,
        tgt_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Teacher-forced logits.

        Args:
            src_tokens: (B, S) long source ids in [0, vocab_size), S <= max_seq_len.
            tgt_tokens: (B, T) long target ids (shifted right: start token first).
            src_padding_mask: optional (B, S) bool, True at padded source positions.
            tgt_padding_mask: optional (B, T) bool, True at padded target positions.

        Returns:
            (B, T, vocab_size) logits; position t predicts target token t + 1.
        """
        memory = self.encode(src_tokens, src_padding_mask)  # (B, S, C)
        check_tensor(self, tgt_tokens, "B T", name="tgt_tokens", dtype="long", B=src_tokens.shape[0])
        return self.decode(tgt_tokens, memory, src_padding_mask, tgt_padding_mask)

    @torch.no_grad()
    def generate(
        self,
        src_tokens: torch.Tensor,
        max_new_tokens: int,
        start_id: int = 0,
        temperature: float = 1.0,
        top_k: int | None = None,
        use_cache: bool = True,
        *,
        src_padding_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        return_logits: bool = False,
    ):
        """Decode up to ``max_new_tokens`` after ``start_id`` for each source sequence.

        Returns (B, 1 + max_new_tokens) ids starting with ``start_id`` (and the per-step
        logits (B, max_new_tokens, V) if ``return_logits``). The target may not pass max_seq_len.
        """
        c = self.config
        check_sampling(self, max_new_tokens, temperature, top_k)
        check_max(self, 1 + max_new_tokens, c.max_seq_len, "1 + max_new_tokens (max_seq_len)")
        memory = self.encode(src_tokens, src_padding_mask)
        idx = src_tokens.new_full((src_tokens.shape[0], 1), start_id)
        cache = KVCache(c.n_decoder_layers, c.max_seq_len, cross=True) if use_cache else None
        steps = []
        for _ in range(max_new_tokens):
            new = idx[:, -1:] if cache is not None and cache.length else idx
            logits = self.decode(new, memory, src_padding_mask, cache=cache)
            last = logits[:, -1, :]
            steps.append(last)
            idx = torch.cat([idx, sample_next(last, temperature, top_k, generator)], dim=1)
        if return_logits:
            empty = memory.new_zeros(idx.shape[0], 0, c.vocab_size)
            return idx, torch.stack(steps, dim=1) if steps else empty
        return idx


# =============================================================================================
# Presets
# =============================================================================================

_TEXT_UNDERSTANDING = "Text understanding / classification: encoder transformer (BERT); alt. BiLSTM"
_GENERATION = "Text/code generation: decoder transformer (GPT); alt. RNN-LM on device"
_SEQ2SEQ = "Seq2seq such as translation: encoder-decoder (T5/BART), alignment via attention"

register(
    "transformer_encoder_256",
    family="transformer",
    model=TransformerEncoder,
    config=EncoderConfig,
    defaults=dict(
        vocab_size=1000,
        max_seq_len=512,
        d_model=256,
        n_heads=8,
        n_layers=3,
        d_ff=512,
        activation="relu",
        norm_first=False,
        pos="none",
        pool="mean",
        num_classes=10,
        dropout=0.1,
    ),
    modalities=("text",),
    tasks=("classification",),
    description="TransformerPyTorch: 3 post-norm layers, d_model 256, 8 heads, d_ff 512, mean pool, 10 classes",
    when_to_use=_TEXT_UNDERSTANDING,
)
register(
    "transformer_encoder_512",
    family="transformer",
    model=TransformerEncoder,
    config=EncoderConfig,
    defaults=dict(
        vocab_size=1000,
        max_seq_len=512,
        d_model=512,
        n_heads=8,
        n_layers=6,
        d_ff=2048,
        activation="relu",
        norm_first=True,
        pos="learned",
        pool="cls",
        num_classes=2,
        dropout=0.1,
    ),
    modalities=("text",),
    tasks=("classification",),
    description="Pre-norm TransformerBlock x6: d_model 512, 8 heads, d_ff 2048, ReLU, [CLS] pooling",
    when_to_use=_TEXT_UNDERSTANDING,
)
register(
    "transformer_tagger",
    family="transformer",
    model=TransformerEncoder,
    config=EncoderConfig,
    defaults=dict(
        vocab_size=1000,
        max_seq_len=256,
        d_model=128,
        n_heads=4,
        n_layers=2,
        pool="none",
        num_classes=9,
        norm_first=True,
    ),
    modalities=("text",),
    tasks=("tagging",),
    description="Small pre-norm encoder with one prediction per token (tagging, NER with 9 BIO tags)",
    when_to_use="Sequence labelling / NER: encoder transformer; alt. BiLSTM+CRF when small",
)
_BERT = dict(
    vocab_size=30522,
    max_seq_len=512,
    type_vocab_size=2,
    embed_norm=True,
    pooler=True,
    norm_first=False,
    activation="gelu",
    pos="learned",
    pool="cls",
    dropout=0.1,
    norm_eps=1e-12,
    num_classes=2,
)
register(
    "bert_tiny",
    family="transformer",
    model=TransformerEncoder,
    config=EncoderConfig,
    defaults=dict(_BERT, d_model=128, n_heads=2, n_layers=2, d_ff=512),
    modalities=("text",),
    tasks=("classification",),
    description="BERT-Tiny (Turc et al. 2019): 2 layers, 128 wide, 2 heads; 4.39M-parameter backbone",
    when_to_use=_TEXT_UNDERSTANDING,
)
register(
    "bert_base",
    family="transformer",
    model=TransformerEncoder,
    config=EncoderConfig,
    defaults=dict(_BERT, d_model=768, n_heads=12, n_layers=12, d_ff=3072),
    modalities=("text",),
    tasks=("classification",),
    description="BERT-base (bert-base-uncased): 12 layers, 768 wide, 12 heads; 109.5M-parameter backbone",
    when_to_use=_TEXT_UNDERSTANDING,
)
register(
    "gpt_nano",
    family="transformer",
    model=TransformerDecoder,
    config=DecoderConfig,
    defaults=dict(
        vocab_size=65, max_seq_len=256, d_model=384, n_heads=6, n_layers=6, dropout=0.2, pos="learned", bias=False
    ),
    modalities=("text",),
    tasks=("language_modeling",),
    description="nanoGPT shakespeare-char baby GPT: 6 layers, 6 heads, 384 wide, block 256, 65 characters",
    when_to_use="Character-level text generation on a small corpus: a decoder transformer",
)
register(
    "gpt2_small",
    family="transformer",
    model=TransformerDecoder,
    config=DecoderConfig,
    defaults=dict(vocab_size=50257, max_seq_len=1024, d_model=768, n_heads=12, n_layers=12, dropout=0.0, pos="learned"),
    modalities=("text",),
    tasks=("language_modeling",),
    description="GPT-2 small (Radford et al. 2019): 12 layers, 768 wide, vocab 50257, block 1024; 124.4M parameters",
    when_to_use=_GENERATION,
)
register(
    "t5_small",
    family="transformer",
    model=TransformerSeq2Seq,
    config=Seq2SeqConfig,
    defaults=dict(
        vocab_size=32128,
        max_seq_len=512,
        d_model=512,
        n_heads=8,
        n_layers=6,
        n_decoder_layers=6,
        d_ff=2048,
        activation="relu",
        dropout=0.1,
        pos="learned",
        norm="rmsnorm",
        norm_eps=1e-6,
    ),
    modalities=("text",),
    tasks=("seq2seq",),
    description="T5-small-sized encoder-decoder: 6 + 6 pre-norm RMSNorm layers, 512 wide, 8 heads, shared tied embeddings",
    when_to_use=_SEQ2SEQ,
)
