"""schemathesis hooks (named in schemathesis.toml): upload parts declared `audio/*` get real,
short WAV recordings, so that positive cases of POST /v1/tracks and POST /v1/similar are
audio the front end accepts, and the stateful phase follows the links of an added track."""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

from tests.hostile_audio import tone, wav_bytes

RATE = 8000


def _recording(hz: int, tenths: int) -> bytes:
    """A tone with a little noise, 3.2-4.0 s at 8 kHz: above one 3 s window, ~60 kB."""
    return wav_bytes(tone(tenths / 10, RATE, hz=float(hz)), RATE)


recordings = st.builds(
    _recording, st.integers(min_value=80, max_value=3000), st.integers(min_value=32, max_value=40)
)
schemathesis.openapi.media_type("audio/wav", recordings, aliases=["audio/x-wav"])
