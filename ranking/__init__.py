"""Ranking metrics of the paper (mAP@k, AUC; numpy and scipy only): upstream of training,
whose validation ranks with them, and of evaluation, whose report and gate do."""
