"""Content encoders by name: one module per architecture, one table of names.

As whisper's `available_models()`: `ARCHITECTURES` maps a name to the encoder class that
implements the protocol (`training.encoders.base.ContentEncoder`), the name is saved in
the checkpoint (`encoder.json`), and `training.checkpoint.load_encoder` builds whatever
it names. Adding an architecture is one new module in this package (its dims dataclass,
its default front end, its encoder class: see `base`) and one row below; nothing else in
the house names a class. The classes are imported on first use, so that listing the
names (the command line's help texts) does not import torch.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from audio.config import FrontEndConfig

if TYPE_CHECKING:
    from training.encoders.base import ContentEncoder, EncoderDims

# name -> "module:class" of its encoder.
ARCHITECTURES: dict[str, str] = {
    "dieleman": "training.encoders.dieleman:DielemanEncoder",
    "dieleman-msd": "training.encoders.dieleman_msd:DielemanMsdEncoder",
    "samplecnn": "training.encoders.samplecnn:SampleCNNEncoder",
    "student": "training.encoders.student:StudentEncoder",
    "musicnn": "training.encoders.musicnn_encoders:MusicnnEncoder",
    "musicnn-msd": "training.encoders.musicnn_encoders:MusicnnMsdEncoder",
}
# What `coldstart train`, `featurize`, `pipeline` and `demo` use when no --encoder is given.
DEFAULT_ENCODER = "dieleman"


class UnknownEncoderError(ValueError):
    """A name that is not in the table (`available_encoders()` lists the names)."""


def available_encoders() -> list[str]:
    """The architectures' names, the default first."""
    return [DEFAULT_ENCODER, *sorted(name for name in ARCHITECTURES if name != DEFAULT_ENCODER)]


def check_encoder_name(name: str) -> str:
    """`name` if the table has it; else `UnknownEncoderError` naming the available ones
    (without importing any encoder)."""
    if name not in ARCHITECTURES:
        raise UnknownEncoderError(
            f"unknown encoder architecture {name!r} (available: {', '.join(available_encoders())})"
        )
    return name


def encoder_class(name: str) -> type[ContentEncoder]:
    """The encoder class named `name`; `UnknownEncoderError` naming the available ones."""
    from training.encoders.base import ContentEncoder

    module, _, attribute = ARCHITECTURES[check_encoder_name(name)].partition(":")
    cls = getattr(importlib.import_module(module), attribute)
    if not (isinstance(cls, type) and issubclass(cls, ContentEncoder) and cls.name == name):
        raise TypeError(f"{ARCHITECTURES[name]} is not the ContentEncoder named {name!r}")
    return cls


def build_encoder(
    name: str,
    dims: EncoderDims | None = None,
    config: FrontEndConfig | None = None,
    *,
    n_factors: int | None = None,
) -> ContentEncoder:
    """A fresh encoder of architecture `name` (`ContentEncoder.fresh`: weights drawn from
    torch's generator, or the trained weights it starts from).

    `dims` None: the architecture's defaults; `config` None: its default front end;
    `n_factors` overrides the dims' (training sets it to the factorization's).
    """
    cls = encoder_class(name)
    sizes = cls.dims_type() if dims is None else dims
    if n_factors is not None:
        sizes = dataclasses.replace(sizes, n_factors=n_factors)
    return cls.fresh(sizes, cls.default_front_end if config is None else config)


def default_front_end(name: str) -> FrontEndConfig:
    """The front end the architecture `name` trains behind (its mel cache's config)."""
    return encoder_class(name).default_front_end


def encoder_of_front_end(config: FrontEndConfig) -> str | None:
    """The first architecture (the default first) whose default front end is `config`."""
    return next((name for name in available_encoders() if default_front_end(name) == config), None)


def featurize_command(dataset_root: Path, config: FrontEndConfig) -> str:
    """What to run to cache `dataset_root`'s mels for `config`: `coldstart featurize` with
    the `--encoder` whose default front end it is (none for the default encoder's)."""
    name = encoder_of_front_end(config)
    if name is None:
        return (
            f"`audio.cache.featurize_dataset({str(dataset_root)!r}, config=...)` with the front"
            f" end {config.fingerprint()[:12]} (no encoder has it by default)"
        )
    option = "" if name == DEFAULT_ENCODER else f" --encoder {name}"
    return f"`coldstart featurize {dataset_root}{option}`"
