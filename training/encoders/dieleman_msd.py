"""`dieleman-msd`: the world's ear and the tagger's ear side by side in one content space.

`dieleman`'s network, trained here on the platform's listens behind musicnn's front end
(16 kHz, 96 bands, hop 256: one front end serves both networks), predicts the factors and
gives the first part of the content embedding (its pooled features' leading singular
directions, as `dieleman`'s). `musicnn-msd`'s network as trained on the Million Song
Dataset's tags (Pons & Serra 2019), frozen, hears the whole clip as `musicnn-msd` does
(its max and mean over time) and gives the second part (its 200 penultimate features) and
the MSD's 50 tags. Each part has unit length (`joined_spaces`), so the content space's
cosine is the mean of the two ears' cosines: on real recordings the two together group
soundtracks better than either alone (`bench/real_music.py`, BENCHMARKS.md; the clip's
middle patch alone, a tenth of the cost, did not on both world seeds).

The teacher never enters training: the head reads the trained network's pooled features
alone (`pool`, `forward_mel`), so a fit costs what `dieleman`'s costs. It runs wherever a
content embedding or tags are made (`embed_tagged`: the service, publish, Spark), at
`musicnn-msd`'s cost; its weights are saved with the model (about 0.8 M of them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Self

import torch
from torch import Tensor

from audio.config import FrontEndConfig
from training.encoders.base import EncoderDims
from training.encoders.dieleman import DielemanDims, DielemanEncoder
from training.encoders.musicnn import MUSICNN_FRONT_END, Musicnn
from training.encoders.student import TEACHER_DIMS


def joined_spaces(*parts: Tensor) -> Tensor:
    """Embeddings (B, d_i) side by side, each row of each part scaled to unit length: the
    cosine of two joined rows is the mean of their parts' cosines, whatever the parts'
    widths and scales. (B, sum of d_i)."""
    return torch.cat([torch.nn.functional.normalize(part, dim=1) for part in parts], dim=1)


@dataclass(frozen=True, kw_only=True)
class DielemanMsdDims(DielemanDims):
    """`DielemanDims` (the trained network and its head) and the frozen teacher's side.

    `tag_names`: the teacher's tags; `wheel_sha256`: the wheel its weights came from (None
    only before `DielemanMsdEncoder.fresh` filled it in).
    """

    teacher_dims: int = TEACHER_DIMS
    tag_names: tuple[str, ...] = ()
    wheel_sha256: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.content_dims is None:
            raise ValueError("DielemanMsdDims: the teacher's features join a content embedding")
        if self.teacher_dims < 1:
            raise ValueError(f"DielemanMsdDims: sizes must be positive ({self})")

    @property
    def min_frames(self) -> int:
        """One patch of the teacher's (2.99 s), what it was trained on."""
        return max(super().min_frames, MUSICNN_FRONT_END.window_frames)

    @property
    def embedding_dims(self) -> int:
        """The trained network's projected features, then the teacher's."""
        return self.projected_dims + self.teacher_dims


class DielemanMsdEncoder(DielemanEncoder):
    """musicnn's log-mel (B, 96, T) -> `dieleman`'s convs, pooling and head (the factors);
    the content embedding joins their projection to the frozen `musicnn-msd`'s features of
    the clip, which also give the tags."""

    name = "dieleman-msd"
    summary = "dieleman's CNN beside musicnn-msd (frozen, its 50 tags): both in the content space"
    dims_type = DielemanMsdDims
    default_front_end = MUSICNN_FRONT_END
    small_dims = DielemanMsdDims(channels=(16, 16, 32), hidden=(64,))

    dims: DielemanMsdDims

    def __init__(self, dims: DielemanMsdDims, config: FrontEndConfig = MUSICNN_FRONT_END) -> None:
        super().__init__(dims, config)
        # Its placeholder weights (the teacher's replace them) draw from a forked generator,
        # so that a seeded fit shuffles and drops out exactly as `dieleman`'s would.
        with torch.random.fork_rng(devices=[]):
            self.teacher_network = Musicnn(dims.tag_names, penultimate_units=dims.teacher_dims)
        self.teacher_network.requires_grad_(False)
        self.teacher_network.eval()

    @classmethod
    def fresh(cls, dims: EncoderDims, config: FrontEndConfig) -> Self:
        """`dims` beside MSD_musicnn's weights, tag names and wheel sha256, read from the
        cache (fetched when missing); `MusicnnWeightsError` naming `coldstart teacher
        fetch` when they can be neither read nor fetched."""
        from training.encoders.musicnn_encoders import MSD_MODEL
        from training.encoders.musicnn_weights import load_weights

        if not isinstance(dims, DielemanMsdDims):
            raise TypeError(f"{cls.name} takes DielemanMsdDims, got {type(dims).__name__}")
        weights = load_weights(MSD_MODEL)
        dims = dataclasses.replace(
            dims, tag_names=weights.tag_names, wheel_sha256=weights.source["wheel_sha256"]
        )
        encoder = cls(dims, config)
        encoder.teacher_network.load_network_weights(weights.state_dict)
        return encoder

    @property
    def tag_names(self) -> tuple[str, ...]:
        return self.dims.tag_names

    def train(self, mode: bool = True) -> Self:
        """Training mode for the trained network; the teacher stays in eval mode (its batch
        norms' statistics and its dropout as trained on the Million Song Dataset)."""
        super().train(mode)
        self.teacher_network.eval()
        return self

    def teacher_features(self, mel: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Model input (B, 96, T) -> the teacher's penultimate features (B, teacher_dims)
        of each clip (`lengths` as in `pooled_mel`)."""
        return self.teacher_network.back_end(self.teacher_network.pool(mel.float(), lengths))

    def embed_tagged(
        self, mel: Tensor, lengths: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        pooled = self.pooled_mel(mel, lengths)  # checks the rows are long enough
        factors, heard = self.embed_pooled(pooled)
        tagger = self.teacher_features(mel, lengths)
        tags = torch.sigmoid(self.teacher_network.tag_logits(tagger))
        return factors, joined_spaces(heard, tagger), tags
