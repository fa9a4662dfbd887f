"""Offline cold-start evaluation: ranking metrics (numpy and scipy only) and the run report."""
