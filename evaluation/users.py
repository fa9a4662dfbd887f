"""Which users a model is scored over: those with a held-out listen, at most a bound of them.

Scoring ranks every test song for every evaluated user, once per model: at the rehearsal's
100k users evaluate took 84 s, and at a Taste-Profile-sized million users it would take about
14 minutes a night. The mean over a seeded draw of 100,000 users differs from the mean over
all of them by far less than the gate's tolerances (the standard error of mAP over 100k users
is about 0.001), so the report and the gate score at most `MAX_EVALUATED_USERS` users: the
same users for every model of a run, and for the candidate and the current version.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from training.run_data import bounded_draw

MAX_EVALUATED_USERS = 100_000
USER_SAMPLE_SEED = 0


def users_to_evaluate(relevance: sp.csr_array, bound: int = MAX_EVALUATED_USERS) -> np.ndarray:
    """Rows (ascending) of `relevance` `(n_users, n_songs)` with at least one relevant song:
    all of them up to `bound`, else one draw of `bound` seeded by `USER_SAMPLE_SEED`."""
    if bound < 1:
        raise ValueError(f"the bound on evaluated users must be >= 1, got {bound}")
    with_listens = np.flatnonzero(np.diff(relevance.indptr) > 0)
    return with_listens[bounded_draw(with_listens.size, bound, USER_SAMPLE_SEED)]
