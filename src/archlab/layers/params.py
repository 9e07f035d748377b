"""The one parameter-count method every archlab model answers: ``num_params(non_embedding=False)``.

Models get it from :class:`ParamCount` (listed before ``nn.Module`` in the class bases), so the
name and meaning are the same in every family, as nanoGPT's ``get_num_params``.
"""

from __future__ import annotations

from torch import nn

from archlab.layers.embeddings import LearnedPositionalEmbedding

#: Parameter names (last component) that hold a learned position table.
POSITION_TABLE_NAMES = ("pos_embed",)


def count_params(module: nn.Module, *, non_embedding: bool = False) -> int:
    """Parameters of ``module``, tied tensors counted once.

    Args:
        non_embedding: leave out the learned position tables (nanoGPT's convention: token
            tables stay in, since a tied one is also the output layer).
    """
    total = sum(p.numel() for p in module.parameters())
    if not non_embedding:
        return total
    position = {id(p): p for m in module.modules() if isinstance(m, LearnedPositionalEmbedding) for p in m.parameters()}
    position.update(
        {id(p): p for name, p in module.named_parameters() if name.rsplit(".", 1)[-1] in POSITION_TABLE_NAMES}
    )
    return total - sum(p.numel() for p in position.values())


class ParamCount:
    """Mixin giving a model ``num_params(non_embedding=False)``."""

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters (tied tensors counted once); ``non_embedding`` leaves out position tables."""
        return count_params(self, non_embedding=non_embedding)
