"""Recurrent networks (vanilla RNN / LSTM / GRU) with classifier, tagger, LM and forecaster heads.

When to use: streaming / online sequence modelling at
low latency, small on-device language models (RNN-LM), time series. Prefer LSTM/GRU over the
vanilla cell, initialise recurrent weights orthogonally (Saxe et al. 2014) and clip gradients
(Pascanu et al. 2013).
Papers: Hochreiter & Schmidhuber 1997 (LSTM); Cho et al. 2014 (GRU).

Inputs are batch-first. Float sequences are ``(B, T, F)``; token sequences (when ``vocab_size``
is set) are ``(B, T)`` long ids, embedded first. Variable lengths go in as a ``lengths`` tensor
``(B,)`` and run as packed sequences, so padding never reaches the recurrence.

Heads (``head``):
- ``classifier``: ``(B, out_features)`` from the last step (final hidden state of each direction)
  or the mean over valid steps (``pooling``).
- ``tagger``: ``(B, T, out_features)``, one prediction per step (padded steps hold the head's
  output on a zero state).
- ``lm``: ``(B, T, vocab_size)`` next-token logits, with :meth:`RNNNet.generate`.
- ``forecaster``: ``(B, horizon)`` from the pooled state (``(B, L, F)`` windows in).

Streaming: :meth:`RNNNet.forward_with_state` takes and returns the recurrent state (``h`` for
rnn/gru, ``(h, c)`` for lstm, each ``(n_layers * directions, B, hidden_size)``), so a long
stream can be fed in chunks; :meth:`RNNNet.step` feeds one step. ``forward`` returns a tensor.

Presets:
- ``lstm_net`` - a 2-layer LSTM classifier: input 50, hidden 128, 2 outputs, last step.
- ``lstm_classifier`` - an LSTM classifier: input 100, hidden 128, 2 layers, dropout 0.3, 10 classes.
- ``lstm_sine_forecaster`` - the classic LSTM sine-wave demo: input 1, hidden 64, a window of 50
  steps predicting the next value.
- ``gru_mnist1d`` - a GRU classifier for MNIST-1D signals laid out ``(B, 40, 1)``.
- ``bilstm_tagger`` - a bidirectional LSTM sequence tagger over token ids (NER/POS-style).
- ``lstm_char_lm`` - a 2-layer character-level LSTM language model, vocabulary 65.
- ``rnn_char_lm`` - a vanilla-RNN character generator (Karpathy's char-rnn idea): embedding 128, RNN 128.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

import torch
from pydantic import Field, model_validator
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from archlab.config import (
    ArchConfig,
    Depth,
    Extent,
    InitScheme,
    Size,
    Width,
)
from archlab.errors import ConfigError, ShapeError
from archlab.layers.checks import check_index_range, check_range, check_tensor, model_name
from archlab.layers.init import init_weights
from archlab.layers.params import ParamCount
from archlab.layers.sampling import check_sampling, sample_next
from archlab.registry import register

State = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]
_CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RNNConfig(ArchConfig):
    """Config of a recurrent network with one of four heads."""

    head: Literal["classifier", "tagger", "lm", "forecaster"] = Field(
        "classifier", description="Output head: sequence classifier, per-step tagger, language model, forecaster."
    )
    cell: Literal["rnn", "lstm", "gru"] = Field("lstm", description="Recurrent cell type.")
    input_size: Size = Field(1, ge=1, description="Features per step of float input (unused when vocab_size is set).")
    vocab_size: Optional[Size] = Field(
        None, ge=2, description="Token vocabulary; set it to feed (B, T) long ids (required for head=lm)."
    )
    embed_dim: Width = Field(64, ge=1, description="Token embedding width (only with vocab_size).")
    hidden_size: Width = Field(64, ge=1, description="Hidden units per direction per layer.")
    n_layers: Depth = Field(1, ge=1, description="Stacked recurrent layers.")
    bidirectional: bool = Field(False, description="Run a second, backward recurrence and concatenate.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout between recurrent layers and before the head.")
    pooling: Literal["last", "mean"] = Field(
        "last", description="classifier/forecaster: final hidden state or mean over valid steps."
    )
    out_features: Size = Field(2, ge=1, description="Classes (classifier) or tags (tagger).")
    horizon: Size = Field(1, ge=1, description="Future steps predicted by the forecaster head.")
    seq_len: Extent = Field(
        32, ge=1, description="Typical sequence length, for example_input and analysis; any length is accepted."
    )
    init: InitScheme = Field(
        "orthogonal", description="Weight init; orthogonal = orthogonal recurrent, Xavier input weights."
    )

    @model_validator(mode="after")
    def _consistent(self) -> RNNConfig:
        if self.head == "lm" and self.vocab_size is None:
            raise ValueError("head='lm' needs vocab_size (got vocab_size=None)")
        if self.head == "lm" and self.bidirectional:
            raise ValueError("head='lm' cannot be bidirectional=True: the backward pass would see the future tokens")
        return self


class RNNNet(ParamCount, nn.Module):
    """[Embedding] -> stacked RNN/LSTM/GRU -> dropout -> head."""

    def __init__(self, config: RNNConfig):
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.embed_dim) if c.vocab_size else None
        in_size = c.embed_dim if c.vocab_size else c.input_size
        self.rnn = _CELLS[c.cell](
            in_size,
            c.hidden_size,
            num_layers=c.n_layers,
            batch_first=True,
            bidirectional=c.bidirectional,
            dropout=c.dropout if c.n_layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(c.dropout)
        width = c.hidden_size * self.directions
        out = {"classifier": c.out_features, "tagger": c.out_features, "lm": c.vocab_size, "forecaster": c.horizon}[
            c.head
        ]
        self.head = nn.Linear(width, out)
        init_weights(self, c.init, nonlinearity="tanh")

    @property
    def directions(self) -> int:
        return 2 if self.config.bidirectional else 1

    # -- inputs -------------------------------------------------------------------------------
    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        c = self.config
        if c.vocab_size:
            return (torch.randint(0, c.vocab_size, (batch_size, c.seq_len)),)
        return (torch.randn(batch_size, c.seq_len, c.input_size),)

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        if c.vocab_size:
            check_tensor(self, x, "B T", name="tokens", dtype="long")
            check_index_range(self, x, c.vocab_size, name="tokens")
            return self.embed(x)  # (B, T) -> (B, T, E)
        return check_tensor(self, x, "B T F", F=c.input_size)

    def _check_lengths(self, lengths: torch.Tensor, batch: int, steps: int) -> torch.Tensor:
        check_tensor(self, lengths, "B", name="lengths", dtype="long", B=batch)
        return check_range(self, lengths, 1, steps, name="lengths", note=" (the padded length T)")

    def _check_state(self, state: State, batch: int) -> State:
        want = (self.config.n_layers * self.directions, batch, self.config.hidden_size)
        parts = state if isinstance(state, tuple) else (state,)
        n_parts = 2 if self.config.cell == "lstm" else 1
        if len(parts) != n_parts or any(tuple(p.shape) != want for p in parts):
            kind = "(h, c)" if n_parts == 2 else "h"
            got = [tuple(p.shape) for p in parts]
            raise ShapeError(f"{model_name(self)} expects state {kind}, each of shape {want}; got {got}")
        return state

    # -- core ---------------------------------------------------------------------------------
    def encode(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        """Run the recurrence.

        Args:
            x: (B, T, input_size) float, or (B, T) long ids when ``vocab_size`` is set.
            lengths: optional (B,) long valid lengths in [1, T]; sequences run packed.
            state: optional initial state, ``h`` or ``(h, c)``, each (layers*dirs, B, H).

        Returns:
            ((B, T, dirs*H) per-step outputs, zero at padded steps; final state).
        """
        x = self._check_input(x)
        batch, steps = x.shape[0], x.shape[1]
        if state is not None:
            state = self._check_state(state, batch)
        if lengths is None:
            out, state = self.rnn(x, state)
            return out, state
        self._check_lengths(lengths, batch, steps)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed, state)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=steps)  # (B, T, dirs*H)
        return out, state

    def _pool(self, out: torch.Tensor, state: State, lengths: torch.Tensor | None) -> torch.Tensor:
        if self.config.pooling == "mean":
            if lengths is None:
                return out.mean(dim=1)
            mask = torch.arange(out.shape[1], device=out.device)[None, :] < lengths.to(out.device)[:, None]
            return (out * mask.unsqueeze(-1)).sum(1) / lengths.to(out.device, out.dtype).unsqueeze(-1)
        # "last": final hidden state of the top layer in each direction; with packing this is
        # the state at each sequence's own last valid step (and step 0 for the backward pass).
        h = state[0] if isinstance(state, tuple) else state  # (layers*dirs, B, H)
        top = h[-self.directions :]  # (dirs, B, H)
        return top.transpose(0, 1).reshape(h.shape[1], -1)  # (B, dirs*H)

    def forward_with_state(
        self, x: torch.Tensor, state: State | None = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """Like :meth:`forward`, also taking and returning the recurrent state (streaming).

        Feeding a sequence in chunks, each with the state the previous chunk returned, gives
        the same per-step outputs (tagger/lm) and final output (classifier/forecaster with
        ``pooling="last"``) as feeding it at once. Only for unidirectional models.

        Returns:
            (output as :meth:`forward` gives it, final state).
        """
        if state is not None and self.config.bidirectional:
            raise ConfigError(
                f"{model_name(self)}: carrying state needs bidirectional=False; a backward "
                "recurrence cannot be streamed"
            )
        out, new_state = self.encode(x, lengths, state)
        if self.config.head in ("tagger", "lm"):
            return self.head(self.drop(out)), new_state  # (B, T, out)
        pooled = self._pool(out, new_state, lengths)
        return self.head(self.drop(pooled)), new_state  # (B, out)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the recurrence and the head.

        Args:
            x: (B, T, input_size) float, or (B, T) long token ids when ``vocab_size`` is set.
            lengths: optional (B,) long valid lengths; padded steps never enter the recurrence.

        Returns:
            classifier (B, out_features); tagger (B, T, out_features); lm (B, T, vocab_size)
            logits; forecaster (B, horizon).
        """
        return self.forward_with_state(x, None, lengths)[0]

    def step(self, x_t: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """One streaming step: x_t (B, input_size) float or (B,) long -> ((B, out), new state)."""
        out, state = self.forward_with_state(x_t.unsqueeze(1), state)
        return (out[:, -1] if out.dim() == 3 else out), state

    @torch.no_grad()
    def generate(
        self,
        prompt_ids: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample continuations of ``prompt_ids`` (head ``lm`` only; call ``.eval()`` first).

        Args:
            prompt_ids: (B, T0) long ids, T0 >= 1.
            max_new_tokens: tokens to append.
            temperature: softmax temperature; 0 picks the most likely token (greedy).
            top_k: sample only among the k most likely tokens.
            generator: optional torch.Generator for reproducible sampling.

        Returns:
            (B, T0 + max_new_tokens) long: the prompt followed by the new tokens.
        """
        if self.config.head != "lm":
            raise ConfigError(f"{model_name(self)}: generate needs head='lm'; got head={self.config.head!r}")
        check_sampling(self, max_new_tokens, temperature, top_k)
        check_tensor(self, prompt_ids, "B T", name="prompt_ids", dtype="long")
        if prompt_ids.shape[1] < 1:
            raise ShapeError(f"{model_name(self)} expects prompt_ids with at least one token; got (B, 0)")
        tokens = [prompt_ids]
        logits, state = self.forward_with_state(prompt_ids)  # the prompt once; then step by step
        for _ in range(max_new_tokens):
            nxt = sample_next(logits[:, -1].float(), temperature, top_k, generator)  # (B, V) -> (B, 1)
            tokens.append(nxt)
            logits, state = self.forward_with_state(nxt, state)
        return torch.cat(tokens, dim=1)


# -- presets ------------------------------------------------------------------------------------

_FAMILY = dict(family="rnn", model=RNNNet, config=RNNConfig)
_WHEN_SEQ = "Sequential data, streaming/online modelling at low latency (LSTM/GRU: constant cost per step)"
_WHEN_LM = "Text generation on-device / small budgets: RNN-LM, the small alternative to a GPT"
_WHEN_TS = "Time series forecasting with a recurrent state (as in the LSTM sine-wave demo); TCN/Transformer first"

register(
    "lstm_net",
    **_FAMILY,
    defaults=dict(
        head="classifier", cell="lstm", input_size=50, hidden_size=128, n_layers=2, out_features=2, seq_len=20
    ),
    modalities=("time_series", "text"),
    tasks=("classification",),
    description="LSTMNet: LSTM(50 -> 128, 2 layers), Linear on the last step -> 2",
    when_to_use=_WHEN_SEQ,
)
register(
    "lstm_classifier",
    **_FAMILY,
    defaults=dict(
        head="classifier",
        cell="lstm",
        input_size=100,
        hidden_size=128,
        n_layers=2,
        dropout=0.3,
        out_features=10,
        seq_len=20,
    ),
    modalities=("time_series", "text"),
    tasks=("classification",),
    description="LSTM classifier: LSTM(100 -> 128, 2 layers, dropout 0.3), final hidden -> 10",
    when_to_use=_WHEN_SEQ,
)
register(
    "lstm_sine_forecaster",
    **_FAMILY,
    defaults=dict(head="forecaster", cell="lstm", input_size=1, hidden_size=64, horizon=1, seq_len=50),
    modalities=("time_series",),
    tasks=("forecasting", "regression"),
    description="LSTM sine-wave forecaster: windows (B, 50, 1) -> LSTM(64) -> next value (B, 1)",
    when_to_use=_WHEN_TS,
)
register(
    "gru_mnist1d",
    **_FAMILY,
    defaults=dict(head="classifier", cell="gru", input_size=1, hidden_size=64, out_features=10, seq_len=40),
    modalities=("time_series",),
    tasks=("classification",),
    description="GRU(1 -> 64) classifier for MNIST-1D signals laid out (B, 40, 1), 10 classes",
    when_to_use=_WHEN_SEQ,
)
register(
    "bilstm_tagger",
    **_FAMILY,
    defaults=dict(
        head="tagger",
        cell="lstm",
        vocab_size=1000,
        embed_dim=64,
        hidden_size=64,
        bidirectional=True,
        out_features=9,
        dropout=0.1,
        seq_len=24,
    ),
    modalities=("text", "time_series"),
    tasks=("tagging",),
    description="BiLSTM tagger: token ids (B, T) -> embedding 64 -> BiLSTM(64) -> 9 tags per step",
    when_to_use="Text understanding on small budgets: BiLSTM(+CRF, Huang et al. 2015), the small alternative to BERT",
)
register(
    "lstm_char_lm",
    **_FAMILY,
    defaults=dict(
        head="lm", cell="lstm", vocab_size=65, embed_dim=64, hidden_size=128, n_layers=2, dropout=0.1, seq_len=64
    ),
    modalities=("text",),
    tasks=("language_modeling",),
    description="Character-level LSTM LM: vocab 65 -> embedding 64 -> LSTM(128, 2 layers) -> 65 logits",
    when_to_use=_WHEN_LM,
)
register(
    "rnn_char_lm",
    **_FAMILY,
    defaults=dict(head="lm", cell="rnn", vocab_size=65, embed_dim=128, hidden_size=128, seq_len=30),
    modalities=("text",),
    tasks=("language_modeling",),
    description="Character RNN: embedding 128 -> vanilla RNN(128) -> vocab logits, windows of 30",
    when_to_use=_WHEN_LM,
)
