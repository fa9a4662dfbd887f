"""A second content objective beside the factor regression: tell the training artists apart.

A linear classifier from the globally pooled conv features (the features the `content`
space is made of) to the training songs' artists (songs.csv), trained with cross-entropy
beside the factor MSE: the pooled features are pushed to separate artists linearly, so
that songs of one artist (one soundtrack, on real recordings) lie together. The head is
held by the LightningModule and only training uses it (never saved with the encoder, like
`training.contrastive.ProjectionHead`). Songs without a known artist take the class
`NO_ARTIST` and count for nothing in the loss.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

NO_ARTIST = -1


class ArtistHead(nn.Module):
    """Pooled features (B, in_dims) -> artist logits (B, n_artists), one linear layer."""

    def __init__(self, in_dims: int, n_artists: int) -> None:
        super().__init__()
        if n_artists < 1:
            raise ValueError(f"an artist head needs at least one artist, got {n_artists}")
        self.linear = nn.Linear(in_dims, n_artists)

    def forward(self, pooled: Tensor) -> Tensor:
        return self.linear(pooled)


def artist_loss(logits: Tensor, artists: Tensor) -> Tensor:
    """Mean cross-entropy of `logits` (B, n_artists) against `artists` (B,) int, over the rows
    with a known artist (`NO_ARTIST` rows are left out; 0 when no row has one)."""
    if logits.ndim != 2 or artists.shape != logits.shape[:1]:
        raise ValueError(
            f"expected logits (B, n_artists) and artists (B,), got {tuple(logits.shape)}"
            f" and {tuple(artists.shape)}"
        )
    known = artists != NO_ARTIST
    if not bool(known.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[known], artists[known])
