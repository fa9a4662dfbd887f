"""The synthetic music world: a demo and test tool, not part of what a platform runs.

It writes a dataset folder in `corpus.dataset`'s contract; production packages never import
it (import-linter, pyproject.toml). Needs the `world` extra: `pip install '.[world]'`.
"""
