"""Settings small enough that training on the tiny world takes seconds on two cores."""

from training.encoder import EncoderDims
from training.run import CNNSettings

TINY_CNN = CNNSettings(
    dims=EncoderDims(channels=(16, 16, 32), hidden=(64,)),
    epochs=1,
    max_minutes=1.0,
    crops_per_song=2,
    batch_size=32,
    patience=1,
)
