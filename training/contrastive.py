"""A content objective beside the factor regression: crops of one song should sound alike.

SimCLR-style (Chen et al. 2020), with songs as the classes (the supervised contrastive form
of Khosla et al. 2020, so that a song cropped more than twice in one batch is no false
negative): the batch's crops are drawn in pairs of the same song
(`training.datamodule.CropSampler(group=2)`), their globally pooled conv features (the
features the `content` space is made of) go through a small projection head that only
training uses (`ProjectionHead`, held by the LightningModule, never saved with the
encoder), and each crop's cosine to the other crops of its song is pushed up against its
cosine to every other crop of the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ProjectionHead(nn.Module):
    """Pooled features (B, in_dims) -> unit vectors (B, out_dims): the contrastive loss's
    space (SimCLR's g(h); the features below it are what the service embeds)."""

    def __init__(self, in_dims: int, hidden: int = 256, out_dims: int = 128) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_dims, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dims)
        )

    def forward(self, pooled: Tensor) -> Tensor:
        return F.normalize(self.layers(pooled), dim=1)


def song_contrastive_loss(embeddings: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """Supervised contrastive loss of unit `embeddings` (B, D) whose rows share a class when
    `labels` (B,) are equal: per anchor with at least one positive, the mean over its
    positives of -log softmax over every other row of cosine / `temperature`; averaged over
    those anchors (0 when no row has a positive)."""
    if embeddings.ndim != 2 or labels.shape != embeddings.shape[:1]:
        raise ValueError(
            f"expected embeddings (B, D) and labels (B,), got {tuple(embeddings.shape)}"
            f" and {tuple(labels.shape)}"
        )
    logits = embeddings @ embeddings.T / temperature
    self_pair = torch.eye(len(labels), dtype=torch.bool, device=embeddings.device)
    logits = logits.masked_fill(self_pair, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None, :]) & ~self_pair
    counts = positive.sum(dim=1)
    anchors = counts > 0
    if not bool(anchors.any()):
        return embeddings.sum() * 0.0
    per_anchor = log_prob.masked_fill(~positive, 0.0).sum(dim=1)[anchors] / counts[anchors]
    return -per_anchor.mean()
