"""The registry's declaration of which presets stack agrees with the vmap probe.

Every preset up to SMALL parameters is probed here (a vmapped training step of two copies on its
example input, :func:`archlab.runs.stacked.preset_stacks`); the few larger presets (ResNets,
ViTs, GPT-2, BERT, T5, the big U-Net: 4-125 M parameters, 1-35 s each on CPU) were probed when
the set was written and are not re-probed in the suite.
"""

from __future__ import annotations

import pytest

from archlab.registry import STACKABLE_PRESETS, create, list_models, stackable
from archlab.runs.stacked import preset_stacks

SMALL = 2_000_000


def _small_presets() -> list[str]:
    out = []
    for name in list_models():
        net = create(name, device="meta")  # sizes without allocating
        if sum(p.numel() for p in net.parameters()) <= SMALL:
            out.append(name)
    return out


@pytest.mark.parametrize("name", _small_presets())
def test_declared_stackable_matches_the_probe(name):
    reason = preset_stacks(name)
    assert (reason is None) == stackable(name), f"{name}: declared {stackable(name)}, probe says {reason}"


def test_declared_names_are_registered():
    assert STACKABLE_PRESETS <= set(list_models())
    assert {"mlp_784_128_10", "cnn1d_mnist1d", "cnn_digits", "gru_mnist1d"} <= STACKABLE_PRESETS
