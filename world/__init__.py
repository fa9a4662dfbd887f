"""The synthetic music world: a demo and test tool, not part of what a platform runs.

It writes a dataset folder in `corpus.dataset`'s contract; production packages never import
it (import-linter, pyproject.toml). Needs the `world` extra: `pip install '.[world]'`.
"""

# The default world, `make demo`'s: 3,000 songs, 6,000 listeners, 8-s clips. 8 s instead of
# 12 s cuts rendering and featurizing by about 40% with the report's order and gaps on both
# seeds (6 s did not keep them: the CNN fell behind k-means on seed 1's mAP; BENCHMARKS,
# "`make demo`"), which keeps the demo under 5 minutes on 2 cores.
DEFAULT_SONGS, DEFAULT_USERS, DEFAULT_CLIP_SECONDS = 3000, 6000, 8.0
