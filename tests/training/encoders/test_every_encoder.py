"""Every architecture of the table, end to end: it trains on the tiny world behind its own
front end, and its checkpoint serves what training predicted (save -> load -> serve).

Parametrized over `available_encoders()`, so a new architecture is covered by adding its
row; `tests/narrowband.py` (a second front end) runs beside them until a second shipped
architecture has one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from artifacts.manifest import read_manifest
from artifacts.run_layout import MODEL_NAMES
from audio.cache import MelCache, default_cache_dir, featurize_dataset
from audio.config import FrontEndConfig
from audio.frontend import model_input
from tests import narrowband
from tests.teacher import PRETRAINED, use_teacher_cache
from tests.tiny import tiny_settings
from training.checkpoint import CONFIG_FILE, MANIFEST_KIND, load_encoder, save_encoder
from training.encoders import (
    ARCHITECTURES,
    DEFAULT_ENCODER,
    available_encoders,
    build_encoder,
    default_front_end,
    encoder_class,
)
from training.encoders.base import ClipTooShortError, ContentEncoder
from training.encoders.musicnn_weights import WHEEL_SHA256
from training.inference import embed_audio, embed_cached, predict_cached, track_vector
from training.run import train_run

ENCODERS = [*available_encoders(), narrowband.NAME]
ASSET = "vibe_ace.mp3"


def test_the_table_is_consistent() -> None:
    names = available_encoders()
    assert names[0] == DEFAULT_ENCODER and sorted(names) == sorted(ARCHITECTURES)
    for name in names:
        cls = encoder_class(name)
        assert cls.name == name and name not in MODEL_NAMES  # models/<name>/ is free
        assert cls.summary and isinstance(cls.default_front_end, FrontEndConfig)
        for dims in (cls.dims_type(), cls.small_dims):
            assert isinstance(dims, cls.dims_type)
            # a training crop (one window of its front end) is long enough for it
            assert dims.min_frames <= cls.default_front_end.window_frames


@pytest.fixture(
    scope="module",
    # Training from the teacher's whole network takes minutes on two cores.
    params=[pytest.param(n, marks=pytest.mark.slow) if n in PRETRAINED else n for n in ENCODERS],
)
def trained(
    request: pytest.FixtureRequest,
    tiny_world: Path,
    trained_run: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Path, MelCache]]:
    """(architecture, its run folder, the mel cache of its front end): the architecture at
    its small sizes trained on the tiny world, on `trained_run`'s factorization."""
    name = request.param
    with pytest.MonkeyPatch.context() as monkeypatch:
        if name == narrowband.NAME:
            narrowband.register(monkeypatch)
        if name in PRETRAINED:
            use_teacher_cache(request, monkeypatch)
        run = tmp_path_factory.mktemp(f"run-{name}")
        shutil.copytree(trained_run / "factorization", run / "factorization")
        config = default_front_end(name)
        featurize_dataset(tiny_world, config=config, workers=2, progress=False)
        train_run(
            run, cnn=tiny_settings(name), linear=None, kmeans=None, hybrid=False, progress=False
        )
        yield name, run, MelCache.open(default_cache_dir(tiny_world, config))


def test_it_trains_from_the_cache_of_its_own_front_end(
    trained: tuple[str, Path, MelCache],
) -> None:
    name, run, cache = trained
    folder = run / "models" / "cnn"
    manifest = read_manifest(folder, kind=MANIFEST_KIND)
    assert manifest["parameters"]["architecture"] == name
    assert manifest["validation"]["map"] > 0
    encoder = load_encoder(folder, cache.config)  # the cache it trained on is its front end's
    assert encoder.name == name and type(encoder) is encoder_class(name)
    assert encoder.config == default_front_end(name) == cache.config
    assert (folder / CONFIG_FILE).is_file()
    if name in PRETRAINED:  # where its starting weights came from, in encoder.json and manifest
        saved = json.loads((folder / CONFIG_FILE).read_text())["dims"]["wheel_sha256"]
        assert saved == manifest["parameters"]["dims"]["wheel_sha256"] == WHEEL_SHA256


def test_the_checkpoint_predicts_what_training_predicted(
    trained: tuple[str, Path, MelCache],
) -> None:
    """Save -> load: the loaded encoder gives the test songs the vectors the fit wrote."""
    _, run, cache = trained
    folder = run / "models" / "cnn"
    written = np.load(folder / "test_song_factors.npy", allow_pickle=False)
    test_ids = json.loads((run / "factorization" / "test_song_ids.json").read_text())
    with_mel = [row for row, song in enumerate(test_ids) if song in cache]
    assert with_mel
    again = predict_cached(load_encoder(folder), cache, [test_ids[row] for row in with_mel])
    np.testing.assert_allclose(again, written[with_mel], rtol=1e-6, atol=1e-6)


def test_serving_a_real_recording_agrees_with_training(
    trained: tuple[str, Path, MelCache], audio_assets: Path, tmp_path: Path
) -> None:
    """The one embedding path: a file (decoded and through the checkpoint's own front end),
    its bytes, its cached model input, and the front end's float32 output give the same
    vectors; a checkpoint saved again and loaded serves them unchanged."""
    _, run, _ = trained
    encoder = load_encoder(run / "models" / "cnn")
    config = encoder.config
    source = audio_assets / ASSET
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "song.mp3").symlink_to(source)
    featurize_dataset(tmp_path, config=config, workers=1, progress=False)
    cache = MelCache.open(default_cache_dir(tmp_path, config))

    served = embed_audio(encoder, source)
    mel = model_input(source, config)
    samples = round(served.seconds * config.sample_rate)  # decoded at the front end's rate
    assert mel.shape == (config.n_mels, config.n_frames(samples))
    np.testing.assert_array_equal(embed_audio(encoder, source.read_bytes()).vector, served.vector)
    with torch.no_grad():
        factors, content = encoder.embed_mel(torch.from_numpy(mel)[None])
    training = track_vector(encoder.dims, factors[0].numpy(), content[0].numpy())
    np.testing.assert_allclose(training, served.vector, rtol=1e-4, atol=1e-4)
    scale = float(np.abs(served.vector).max())
    for cached, live in (
        (embed_cached(encoder, cache, ["song"])[0], served.vector),
        (predict_cached(encoder, cache, ["song"])[0], served.factors),
    ):
        assert float(np.abs(cached - live).max()) <= 2e-3 * scale  # float16 storage

    save_encoder(encoder, tmp_path / "again")
    np.testing.assert_array_equal(
        embed_audio(load_encoder(tmp_path / "again"), source).vector, served.vector
    )


@pytest.mark.parametrize("name", available_encoders())
def test_a_padded_batch_gives_each_clip_its_own_vectors(
    name: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the protocol asks of `pool`: padding takes no part, so a zero-padded batch of
    clips of any length (at least `min_frames`) gives the vectors each gives alone."""
    if name in PRETRAINED:
        use_teacher_cache(request, monkeypatch)
    torch.manual_seed(1)
    encoder = build_encoder(name, encoder_class(name).small_dims).eval()
    shortest, window = encoder.dims.min_frames, encoder.config.window_frames
    lengths = torch.tensor([window, shortest, 2 * window + 37])
    mels = [torch.randn(encoder.input_bands, int(n)) - 4 for n in lengths]
    padded = torch.full((3, encoder.input_bands, int(lengths.max())), 1e4)  # must not leak
    for row, mel in enumerate(mels):
        padded[row, :, : mel.shape[1]] = mel
    with torch.no_grad():
        batched = encoder.embed_mel(padded, lengths)
        alone = [encoder.embed_mel(mel[None]) for mel in mels]
        with pytest.raises(ClipTooShortError, match=str(shortest)):
            encoder.forward_mel(mels[1][None, :, :-1])
    for output, column in zip(batched, zip(*alone, strict=True), strict=True):
        torch.testing.assert_close(output, torch.cat(column), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", available_encoders())
def test_a_fresh_encoder_is_built_behind_its_default_front_end(
    name: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if name in PRETRAINED:
        use_teacher_cache(request, monkeypatch)
    torch.manual_seed(0)
    encoder: ContentEncoder = build_encoder(name, n_factors=5)
    assert encoder.dims.n_factors == 5 and encoder.config == default_front_end(name)
    clip = 0.1 * torch.randn(2, encoder.config.min_samples)
    with torch.no_grad():
        factors, content = encoder.eval().embed_mel(encoder.front_end(clip))
    assert factors.shape == (2, 5) and content.shape == (2, encoder.dims.embedding_dims)
