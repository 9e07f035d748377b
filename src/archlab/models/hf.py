"""Hugging Face encoders with a classification head, as archlab models (``hf:SOURCE``).

When to use: text classification with little labelled data - a pretrained encoder (pretrained
encoders and adapters save time and energy; BERT loads through Hugging Face transformers)
fine-tuned, frozen with a trained head, or adapted with LoRA (Hu et al. 2021,
"LoRA: Low-Rank Adaptation of Large Language Models").

``HFClassifier`` wraps any ``transformers.AutoModel`` encoder (BERT, MiniLM, RoBERTa, ...):
tokens and archlab's padding mask in, pooled ([CLS] or masked-mean) features, dropout, a linear
head, logits out. The backbone comes from

- ``source``: a local directory or an installed model package (:mod:`archlab.data.hf_text`;
  ``all-minilm-l6-v2`` ships offline), with its pretrained weights (``pretrained=True``); or
- ``hf_config``: a Hugging Face config dict (``{"model_type": "bert", ...}``), randomly
  initialised - the registry preset ``hf_classifier`` is a tiny BERT built this way.

The Hugging Face config is stored in the archlab config once the model is built, so a saved
model (``config.json`` + ``model.safetensors``) holds the architecture beside its weights. With
LoRA adapters (``lora``, added by the train config's ``transfer.lora``; the ``peft`` library) on
a pretrained ``source``, the saved weights are only the adapters and the head: the frozen base
weights are referenced by ``source`` and loaded from it when the model is rebuilt (a base built
from ``hf_config`` is random, so it is saved in full). :meth:`HFClassifier.merge_lora`
folds the adapters into the base weights for export.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from archlab.config import ArchConfig, Extent, Size
from archlab.data.hf_text import resolve_source, transformers_module
from archlab.errors import ConfigError, MissingExtraError
from archlab.layers.checks import check_index_range, check_max, check_tensor
from archlab.layers.embeddings import padded_tokens_example
from archlab.layers.params import ParamCount
from archlab.registry import register

log = logging.getLogger(__name__)

PEFT_EXTRA = "peft is needed for LoRA adapters; install it with: pip install 'archlab[peft]'"
#: The randomly initialised BERT of the ``hf_classifier`` preset (tests, smoke runs).
TINY_BERT = dict(
    model_type="bert",
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    vocab_size=128,
    max_position_embeddings=128,
)


class LoraOptions(BaseModel):
    """LoRA adapters (Hu et al. 2021): W x + (alpha / r) B A x on the chosen Linear layers."""

    model_config = ConfigDict(extra="forbid")
    r: int = Field(8, ge=1, le=1024, description="Rank of the update B A.")
    alpha: float = Field(16.0, gt=0, description="Scale numerator: the update is multiplied by alpha / r.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter's input.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["query", "value"],
        min_length=1,
        max_length=64,
        description="Names (last component) or regex of the backbone's Linear layers that get adapters.",
    )


class HFClassifierConfig(ArchConfig):
    """A Hugging Face encoder with a pooled classification head."""

    source: str | None = Field(
        None, description="Local directory or model package (e.g. all-minilm-l6-v2); None: build from hf_config."
    )
    hf_config: dict[str, Any] | None = Field(
        None, description="Hugging Face config dict (with model_type); filled from source when the model is built."
    )
    pretrained: bool = Field(True, description="Load the source's pretrained weights (False: its architecture only).")
    num_classes: Size = Field(2, ge=1, description="Classes of the head.")
    vocab_size: Size | None = Field(
        None, ge=1, description="Token ids accepted; resizes the embedding table when it differs from the backbone's."
    )
    pooling: Literal["cls", "mean"] = Field("mean", description="First token ([CLS]) or mean over unpadded tokens.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout before the head.")
    max_seq_len: Extent = Field(128, ge=2, description="Longest token sequence accepted (and example_input's length).")
    lora: LoraOptions | None = Field(None, description="LoRA adapters on the backbone; set by transfer.lora.")
    frozen: list[str] = Field(
        default_factory=list,
        max_length=4096,
        description="Modules or parameters kept frozen; set by transfer.freeze, so a reload shows them.",
    )


def _on_meta() -> bool:
    return torch.empty(0).device.type == "meta"


def _build_backbone(c: HFClassifierConfig) -> nn.Module:
    """The encoder: pretrained from ``source``, or initialised from ``hf_config``."""
    tf = transformers_module()
    if c.hf_config is None and c.source is None:
        c.hf_config = dict(TINY_BERT)
    if c.source is not None and c.pretrained and not _on_meta():
        path = resolve_source(c.source)
        try:
            backbone = tf.AutoModel.from_pretrained(str(path), local_files_only=True)
        except OSError as exc:  # a config without weights, or weights in a format transformers cannot read
            raise ConfigError(
                f"source {c.source!r}: expected pretrained weights in {path}; {str(exc).splitlines()[0][:120]} "
                "(pretrained=False builds its architecture with random weights)"
            ) from None
    else:
        if c.hf_config is None:
            c.hf_config = tf.AutoConfig.from_pretrained(
                str(resolve_source(c.source)), local_files_only=True
            ).to_diff_dict()
        if int(c.hf_config.get("max_position_embeddings") or 0) < c.max_seq_len:  # random positions: any length
            c.hf_config = {**c.hf_config, "max_position_embeddings": c.max_seq_len}
        fields = dict(c.hf_config)
        if "model_type" not in fields:
            raise ConfigError(f"hf_config needs a 'model_type' (e.g. 'bert'); got keys {sorted(fields)}")
        backbone = tf.AutoModel.from_config(tf.AutoConfig.for_model(fields.pop("model_type"), **fields))
    if c.hf_config is None:
        c.hf_config = backbone.config.to_diff_dict()
    if getattr(backbone, "pooler", None) is not None:
        backbone.pooler = None  # BERT's [CLS] pooler: unused (pooling is ours), so it would get no gradient
    return backbone


class HFClassifier(ParamCount, nn.Module):
    """Token ids -> Hugging Face encoder -> pooled features -> class logits."""

    def __init__(self, config: HFClassifierConfig):
        super().__init__()
        self.config = c = config
        self.backbone = _build_backbone(c)
        if c.vocab_size is not None and c.vocab_size != self.backbone.get_input_embeddings().num_embeddings:
            self.backbone.resize_token_embeddings(c.vocab_size)
            c.hf_config = {**c.hf_config, "vocab_size": c.vocab_size}
        hidden = int(self.backbone.config.hidden_size)
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(hidden, c.num_classes)
        if c.lora is not None:
            self._inject_lora(c.lora)
        for name in c.frozen:
            params = (
                self.get_submodule(name).parameters()
                if name in dict(self.named_modules())
                else [self.get_parameter(name)]
            )
            for p in params:
                p.requires_grad = False

    @property
    def vocab(self) -> int:
        return int(self.backbone.get_input_embeddings().num_embeddings)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
        return padded_tokens_example(batch_size, self.vocab, self.config.max_seq_len)

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Classify token sequences.

        Args:
            tokens: (B, T) long token ids in [0, vocab), T <= max_seq_len (a Hugging Face tokenizer's
                ids, [CLS] first).
            padding_mask: optional (B, T) bool, True at padded positions (never attended to, left
                out of mean pooling).

        Returns:
            (B, num_classes) logits.
        """
        check_tensor(self, tokens, "B T", name="tokens", dtype="long")
        check_max(self, tokens.shape[1], self.config.max_seq_len, "tokens length T (max_seq_len)")
        check_index_range(self, tokens, self.vocab, name="tokens")
        keep = None
        if padding_mask is not None:
            B, T = tokens.shape
            check_tensor(self, padding_mask, "B T", name="padding_mask", dtype="bool", B=B, T=T)
            keep = (~padding_mask).long()  # Hugging Face's attention_mask: 1 at real tokens
        h = self.backbone(input_ids=tokens, attention_mask=keep).last_hidden_state  # (B, T, H)
        if self.config.pooling == "cls":
            pooled = h[:, 0]  # (B, T, H) -> (B, H)
        elif keep is None:
            pooled = h.mean(dim=1)
        else:
            w = keep.unsqueeze(-1).to(h.dtype)  # (B, T, 1)
            pooled = (h * w).sum(dim=1) / w.sum(dim=1).clamp(min=1)  # masked mean: (B, T, H) -> (B, H)
        return self.head(self.dropout(pooled))

    # -- LoRA -----------------------------------------------------------------------------------
    def add_lora(self, options: LoraOptions | dict[str, Any]) -> None:
        """Put LoRA adapters on the backbone's target Linear layers and freeze the backbone.

        Recorded in ``config.lora``, so a saved model rebuilds with its adapters. Calling it
        again with the same options does nothing.
        """
        options = LoraOptions.model_validate(options)
        if self.config.lora is not None:
            if self.config.lora != options:
                raise ConfigError(f"this model already has LoRA {self.config.lora}; cannot add {options}")
            return
        self._inject_lora(options)
        self.config.lora = options

    def _inject_lora(self, options: LoraOptions) -> None:
        try:
            import peft
        except ImportError:
            raise MissingExtraError(PEFT_EXTRA) from None
        lora = peft.LoraConfig(
            r=options.r,
            lora_alpha=options.alpha,
            lora_dropout=options.dropout,
            target_modules=list(options.target_modules),
        )
        try:
            peft.inject_adapter_in_model(lora, self.backbone)
        except ValueError as exc:  # peft: "Target modules ... not found in the base model"
            names = sorted({n.rsplit(".", 1)[-1] for n, m in self.backbone.named_modules() if isinstance(m, nn.Linear)})
            raise ConfigError(
                f"lora.target_modules={options.target_modules} match no Linear layer of the backbone; "
                f"its Linear layers are named {names} ({str(exc).splitlines()[0][:80]})"
            ) from None
        for name, p in self.backbone.named_parameters():
            p.requires_grad = "lora_" in name  # peft freezes nothing when injecting; the base stays fixed

    def merge_lora(self) -> None:
        """Fold the adapters into the base weights (W += alpha/r B A) and remove them, for export."""
        if self.config.lora is None:
            return
        from peft.tuners.lora import LoraLayer

        for name, module in list(self.backbone.named_modules()):
            if isinstance(module, LoraLayer):
                module.merge()
                parent = self.backbone.get_submodule(name.rpartition(".")[0]) if "." in name else self.backbone
                setattr(parent, name.rpartition(".")[2], module.get_base_layer())
        self.config.lora = None
        for p in self.parameters():
            p.requires_grad = True

    # -- saving: an adapter model keeps only what it trained -------------------------------------
    def _saved_key(self, key: str) -> bool:
        c = self.config
        # Only a pretrained base can be left out: a random one (built from hf_config) exists nowhere else.
        adapter_only = c.lora is not None and c.source is not None and c.pretrained
        return not adapter_only or not key.startswith("backbone.") or "lora_" in key

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """All tensors; with LoRA on a pretrained source only the adapters and the head (the base is the source's)."""
        state = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "")
        return type(state)((k, v) for k, v in state.items() if self._saved_key(k[len(prefix) :]))

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False):
        """Load tensors; with LoRA on a pretrained source the base weights may be absent (they come from it)."""
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if self._saved_key(k)]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(
                f"{type(self).__name__}.load_state_dict: missing {missing[:10]}, unexpected {result.unexpected_keys[:10]}"
            )
        return result


register(
    "hf_classifier",
    family="hf",
    model=HFClassifier,
    config=HFClassifierConfig,
    modalities=("text",),
    tasks=("classification",),
    description="A Hugging Face encoder + pooled linear head; tiny BERT by default, hf:SOURCE for a pretrained one",
    when_to_use="Text classification with few labels: fine-tune a pretrained encoder, or adapt it with LoRA",
)
