"""Settings small enough that training on the tiny world takes seconds on two cores."""

import dataclasses

from training.encoder_fit import CNNSettings
from training.encoders import encoder_class
from training.encoders.dieleman import DielemanDims

TINY_CNN = CNNSettings(
    encoder="dieleman",
    dims=DielemanDims(channels=(16, 16, 32), hidden=(64,)),
    epochs=1,
    max_minutes=1.0,
    crops_per_song=2,
    batch_size=32,
    patience=1,
)


def tiny_settings(name: str) -> CNNSettings:
    """`TINY_CNN` for the architecture `name`, at its `small_dims`."""
    return dataclasses.replace(TINY_CNN, encoder=name, dims=encoder_class(name).small_dims)
