"""The bound on evaluated users: every user with a test listen below it, one seeded draw above
it, the same for the report and the gate."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from evaluation.users import users_to_evaluate


def _relevance(n_users: int, silent_every: int) -> sp.csr_array:
    """`(n_users, 20)` listens where every `silent_every`-th user heard no test song."""
    rng = np.random.default_rng(1)
    dense = rng.random((n_users, 20)) < 0.2
    dense[:, 0] = True
    dense[::silent_every] = False
    return sp.csr_array(dense)


def test_below_the_bound_every_user_with_a_listen_is_scored() -> None:
    relevance = _relevance(300, silent_every=7)
    rows = users_to_evaluate(relevance, bound=1000)
    np.testing.assert_array_equal(rows, np.flatnonzero(np.diff(relevance.indptr) > 0))
    assert rows.size == 300 - len(range(0, 300, 7))


def test_above_the_bound_one_seeded_draw_of_users_with_listens() -> None:
    relevance = _relevance(5000, silent_every=3)
    rows = users_to_evaluate(relevance, bound=600)
    assert rows.size == 600 and np.all(np.diff(rows) > 0)
    assert np.all(np.diff(relevance.indptr)[rows] > 0)  # no silent user drawn
    np.testing.assert_array_equal(rows, users_to_evaluate(relevance.copy(), bound=600))
    # Not the first 600: the sample spans the users.
    assert rows.max() > 4000


def test_a_bound_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        users_to_evaluate(_relevance(10, silent_every=2), bound=0)
