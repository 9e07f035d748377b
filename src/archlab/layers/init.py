"""Weight initialisation schemes, as usually advised per family.

- ``kaiming``: He init for ReLU-family nets (conv/linear weights, fan-in, ReLU gain).
- ``xavier``: Glorot init for tanh/sigmoid nets and attention projections.
- ``orthogonal``: orthogonal recurrent (hidden-to-hidden) weights, Xavier input weights.
- ``normal``: N(0, 0.02) as in GPT-2 / BERT.
- ``default``: PyTorch's own per-layer defaults (nothing changed).

Norm layers get weight 1 / bias 0 and biases are zeroed under every non-default scheme.
"""

from __future__ import annotations

from torch import nn

_NORMS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.RMSNorm,
)
_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.Bilinear)


def init_weights(model: nn.Module, scheme: str = "default", *, nonlinearity: str = "relu") -> nn.Module:
    """Initialise ``model`` in place with ``scheme``; returns the model."""
    if scheme == "default":
        return model
    for module in model.modules():
        if isinstance(module, _WEIGHTED):
            w = module.weight
            if scheme == "kaiming":
                nl = nonlinearity if nonlinearity in ("relu", "leaky_relu") else "relu"
                nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity=nl)
            elif scheme in ("xavier", "orthogonal"):
                nn.init.xavier_uniform_(w)
            elif scheme == "normal":
                nn.init.normal_(w, 0.0, 0.02)
            else:
                raise ValueError(f"unknown init scheme {scheme!r}")
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, _NORMS) and getattr(module, "weight", None) is not None:
            nn.init.ones_(module.weight)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding) and scheme == "normal":
            nn.init.normal_(module.weight, 0.0, 0.02)
        elif isinstance(module, (nn.RNNBase,)):
            for pname, p in module.named_parameters():
                if "weight_hh" in pname:
                    if scheme == "orthogonal":
                        # one orthogonal block per gate (LSTM has 4, GRU 3)
                        h = p.shape[1]
                        for k in range(p.shape[0] // h):
                            nn.init.orthogonal_(p.data[k * h : (k + 1) * h])
                    else:
                        nn.init.xavier_uniform_(p)
                elif "weight_ih" in pname:
                    nn.init.xavier_uniform_(p)
                elif "bias" in pname:
                    nn.init.zeros_(p)
    return model
