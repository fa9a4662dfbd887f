"""Where a cold track sits in a version's cf space: by its audio and, when the version knows
its artist, by the artist's earlier songs (`training.fusion`, the rule the evaluation
scored). The content space holds the CNN's content embedding; the catalogue stores it with
the CNN's predicted factors (`training.inference.track_vector`), so a version swap or a
replica re-derives the cf vector from those factors with its own priors.
"""

from __future__ import annotations

from typing import cast

import numpy as np

from pipeline.registry.read import LoadedVersion
from service.schemas import Placement
from training.fusion import PLACEMENT_AUDIO


def cf_placement(
    version: LoadedVersion, cnn_vector: np.ndarray, artist: object
) -> tuple[np.ndarray, Placement]:
    """The `(F,)` float32 cf vector of a cold track with CNN vector `cnn_vector` `(F,)` by
    the raw `artist` string (any string, or None), and its placement: "hybrid" for an
    artist with training songs in `version`, else "audio" (the CNN vector itself)."""
    if version.hybrid is None:
        return cnn_vector, cast(Placement, PLACEMENT_AUDIO)
    vectors, placements = version.hybrid.place(np.asarray(cnn_vector)[None, :], [artist])
    return vectors[0], cast(Placement, placements[0])
