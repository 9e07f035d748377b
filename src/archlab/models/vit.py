"""Vision Transformer (ViT): an image as a sequence of patches, then a transformer encoder.

When to use: image classification with pretrained weights or plenty of data (a pretrained
ResNet or ViT transfers well). Trained from scratch on small datasets a ViT
lacks a CNN's locality prior and usually loses to a ResNet unless augmentation is strong.

Paper: Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words". The image (B, C, H, W) is cut
into non-overlapping P x P patches by a convolution with kernel = stride = P, each patch becomes
one token, a learned [CLS] token is prepended, learned positions are added, and the pre-norm
transformer blocks of :mod:`archlab.layers.attention` run over the N + 1 tokens.

Presets:
- ``vit_tiny`` - ViT-Ti sizes (192 wide, 3 heads, 12 layers) on 32x32 images in 4x4 patches
  (CIFAR-10: 64 patches, 10 classes).
- ``vit_b16`` - ViT-B/16 at 224x224: 768 wide, 12 heads, 12 layers, 1000 classes
  (86,567,656 parameters, as timm's ``vit_base_patch16_224``).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from archlab.config import Extent, Size, Width
from archlab.layers.checks import check_tensor
from archlab.layers.params import ParamCount
from archlab.models.transformer_blocks import TransformerBaseConfig, TransformerStack, init_transformer
from archlab.registry import register


class ViTConfig(TransformerBaseConfig):
    """Config of a Vision Transformer classifier."""

    image_size: Extent = Field(224, ge=1, description="Height and width of the (square) input images.")
    patch_size: Extent = Field(16, ge=1, description="Side of each square patch; image_size must be divisible by it.")
    in_channels: Width = Field(3, ge=1, description="Image channels.")
    num_classes: Size = Field(1000, ge=1, description="Classes of the head.")
    pool: Literal["cls", "mean"] = Field(
        "cls", description="Classify from the [CLS] token or the mean of the patch tokens."
    )
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="Dropout on attention weights, residual branches and embeddings."
    )

    @model_validator(mode="after")
    def _patches_tile_image(self):
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} is not divisible by patch_size={self.patch_size}")
        return self

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


class ViT(ParamCount, nn.Module):
    """Patches -> [CLS] + positions -> transformer encoder -> class logits."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = c = config
        # one conv with kernel = stride = P is a Linear applied to each flattened patch
        self.patch_embed = nn.Conv2d(c.in_channels, c.d_model, kernel_size=c.patch_size, stride=c.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.d_model))
        self.pos_embed = nn.Parameter(torch.zeros(1, c.num_patches + 1, c.d_model))
        self.dropout = nn.Dropout(c.dropout)
        self.stack = TransformerStack(c, c.n_layers)
        self.head = nn.Linear(c.d_model, c.num_classes)
        init_transformer(self, c.init)
        if c.init != "default":
            nn.init.normal_(self.pos_embed, 0.0, 0.02)
            nn.init.normal_(self.cls_token, 0.0, 0.02)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        c = self.config
        return (torch.randn(batch_size, c.in_channels, c.image_size, c.image_size),)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, N + 1, d_model) tokens, [CLS] first."""
        c = self.config
        check_tensor(self, x, "B C H W", C=c.in_channels, H=c.image_size, W=c.image_size)
        x = self.patch_embed(x)  # (B, C, H, W) -> (B, d, H/P, W/P)
        x = x.flatten(2).transpose(1, 2)  # (B, d, H/P, W/P) -> (B, N, d)
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (1, 1, d) -> (B, 1, d)
        x = torch.cat([cls, x], dim=1) + self.pos_embed  # (B, N + 1, d)
        return self.stack(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify images.

        Args:
            x: (B, in_channels, image_size, image_size) float images.

        Returns:
            (B, num_classes) logits.
        """
        h = self.forward_features(x)
        h = h[:, 0] if self.config.pool == "cls" else h[:, 1:].mean(dim=1)  # (B, N + 1, d) -> (B, d)
        return self.head(h)


_WHEN = "Images (classification) with pretraining or lots of data (ResNet / ViT; alt. ConvNeXt)"
register(
    "vit_tiny",
    family="vit",
    model=ViT,
    config=ViTConfig,
    defaults=dict(
        image_size=32,
        patch_size=4,
        in_channels=3,
        num_classes=10,
        d_model=192,
        n_heads=3,
        n_layers=12,
        d_ff=768,
        norm_eps=1e-6,
    ),
    modalities=("image",),
    tasks=("classification",),
    description="ViT-Tiny sizes on 32x32 images in 4x4 patches (CIFAR-10, 10 classes)",
    when_to_use=_WHEN,
)
register(
    "vit_b16",
    family="vit",
    model=ViT,
    config=ViTConfig,
    defaults=dict(
        image_size=224,
        patch_size=16,
        in_channels=3,
        num_classes=1000,
        d_model=768,
        n_heads=12,
        n_layers=12,
        d_ff=3072,
        norm_eps=1e-6,
    ),
    modalities=("image",),
    tasks=("classification",),
    description="ViT-B/16 (Dosovitskiy et al. 2021): 224x224, 16x16 patches, 768 wide, 12 layers; 86.6M parameters",
    when_to_use=_WHEN,
)
