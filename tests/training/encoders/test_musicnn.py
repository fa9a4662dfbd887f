"""The PyTorch musicnn against TensorFlow's (the committed reference), and its shapes."""

from __future__ import annotations

import json
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch

from audio.decode import decode_audio
from audio.mel import LogMel
from training.encoders.musicnn import MUSICNN_FRONT_END, Musicnn, MusicnnFeatures, clip_patches
from training.encoders.musicnn_weights import load_weights

REFERENCE = json.loads(
    (
        Path(__file__).resolve().parents[2] / "assets" / "musicnn" / "msd_musicnn_reference.json"
    ).read_text()
)
RECORDINGS = sorted(REFERENCE["recordings"])


@pytest.fixture(scope="module")
def msd(musicnn_cache: Path) -> Musicnn:
    return load_weights("MSD_musicnn", musicnn_cache, fetch=False).network()


def _patch_features(network: Musicnn, samples: np.ndarray) -> tuple[torch.Tensor, MusicnnFeatures]:
    with torch.inference_mode():
        patches = clip_patches(LogMel(MUSICNN_FRONT_END)(torch.from_numpy(samples))[0])
        return patches, network(patches)


@pytest.mark.parametrize("recording", RECORDINGS)
def test_the_port_agrees_with_tensorflow_within_1e_4(
    msd: Musicnn, audio_assets: Path, recording: str
) -> None:
    expected = REFERENCE["recordings"][recording]
    # decoded and resampled as the reference was (librosa.load), the rest is ours
    samples, _ = librosa.load(audio_assets / recording, sr=MUSICNN_FRONT_END.sample_rate)
    patches, features = _patch_features(msd, samples)
    np.testing.assert_allclose(patches.mean(dim=(1, 2)), expected["patch_mel_means"], atol=1e-5)
    np.testing.assert_allclose(features.penultimate, expected["penultimate"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(
        torch.sigmoid(features.logits), expected["tag_probabilities"], rtol=0, atol=1e-4
    )


@pytest.mark.parametrize("recording", RECORDINGS)
def test_through_the_projects_decoder_it_hears_what_the_authors_pipeline_hears(
    msd: Musicnn, audio_assets: Path, recording: str
) -> None:
    """FFmpeg's resampler (the service's) is not soxr's: the tags move by up to 0.011 here."""
    samples = decode_audio(audio_assets / recording, MUSICNN_FRONT_END).samples
    _, features = _patch_features(msd, samples)
    expected = REFERENCE["recordings"][recording]["tag_probabilities"]
    np.testing.assert_allclose(torch.sigmoid(features.logits), expected, rtol=0, atol=0.05)


def test_a_whole_clip_goes_through_in_one_pass_and_batches_do_not_mix() -> None:
    torch.manual_seed(0)
    network = Musicnn(tag_names=("a", "b", "c")).eval()
    clip = torch.randn(96, 500) + 2.0
    patches = clip_patches(clip)
    assert patches.shape == (2, 96, 187)  # the 126-frame tail is dropped
    with torch.inference_mode():
        together = network(patches)
        alone = [network(patch[None]) for patch in patches]
        whole = network(clip[None])
        tags = network.tag_probabilities(patches)
    assert (network.frame_dims, network.pooled_dims) == (753, 1506)  # the wheel's sizes
    assert together.pooled.shape == (2, 1506) and together.penultimate.shape == (2, 200)
    assert together.logits.shape == tags.shape == (2, 3)
    for index, one in enumerate(alone):
        for got, want in zip(together, one, strict=True):
            torch.testing.assert_close(got[index], want[0], rtol=1e-5, atol=1e-5)
    assert whole.pooled.shape == (1, 1506) and bool(torch.isfinite(whole.pooled).all())
    # "same" padding: a frame farther than the receptive field's reach (64 frames of the
    # longest temporal filter + 3 x 3 of the mid end) from a patch's end is the clip's frame
    with torch.inference_mode():
        in_clip = network.frame_features(clip[None])[0, :, :187]
        in_patch = network.frame_features(patches[:1])[0]
    torch.testing.assert_close(in_clip[:, :110], in_patch[:, :110], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(in_clip[:, -1], in_patch[:, -1])  # a patch's end is padded
    assert bool(((tags > 0) & (tags < 1)).all())


def test_a_padded_batch_gives_each_clip_its_own_features() -> None:
    torch.manual_seed(0)
    network = Musicnn(("a", "b"), width=0.2, mid_end_filters=16, penultimate_units=32).eval()
    clips = [torch.rand(96, frames) * 4 for frames in (187, 260, 400)]
    lengths = torch.tensor([clip.shape[1] for clip in clips])
    batch = torch.zeros(3, 96, 400)
    for row, clip in enumerate(clips):
        batch[row, :, : clip.shape[1]] = clip
    with torch.inference_mode():
        together = network(batch, lengths)
        unmasked = network(batch)
        for row, clip in enumerate(clips):
            alone = network(clip[None])
            for got, want in zip(together, alone, strict=True):
                torch.testing.assert_close(got[row], want[0], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(unmasked.pooled[0], together.pooled[0])  # the padding would leak


def test_clips_shorter_than_a_patch_or_of_other_bands_are_refused() -> None:
    network = Musicnn().eval()
    with pytest.raises(ValueError, match="186 frames"):
        network(torch.zeros(1, 96, 186))
    with pytest.raises(ValueError, match="186 frames"):
        network(torch.zeros(2, 96, 300), torch.tensor([300, 186]))
    with pytest.raises(ValueError, match=r"\(B, 96, T\)"):
        network(torch.zeros(1, 128, 200))


def test_trained_from_scratch_every_layer_learns() -> None:
    """Without a tag head (the `musicnn` encoder trained here): logits of width 0, and a
    loss on the pooled and penultimate features reaches every weight."""
    torch.manual_seed(0)
    network = Musicnn(width=0.2, mid_end_filters=16, penultimate_units=32).train()
    assert network.pooled_dims == 2 * (2 * 25 + 3 * 6 + 3 * 16)
    features = network.features(torch.randn(4, 16000 * 3) * 0.1)
    assert features.pooled.shape == (4, network.pooled_dims)
    assert features.penultimate.shape == (4, 32) and features.logits.shape == (4, 0)
    (features.pooled.square().mean() + features.penultimate.square().mean()).backward()
    silent = [
        name
        for name, weight in network.named_parameters()
        if weight.grad is None or not bool(weight.grad.abs().sum() > 0)
    ]
    assert silent == []
