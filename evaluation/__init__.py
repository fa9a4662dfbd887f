"""Offline cold-start evaluation: the run report and the quality gate (metrics: `ranking`)."""
