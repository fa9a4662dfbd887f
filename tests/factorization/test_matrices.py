"""Listen matrices from categorical codes: id order, duplicates summed, strangers dropped."""

from __future__ import annotations

import numpy as np
import pandas as pd

from factorization.matrices import confidence_matrix, listening_users, play_count_matrix


def listens_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": pd.Categorical(["u1", "u2", "u1", "u3", "u1"]),
            "song_id": pd.Categorical(["a", "b", "c", "c", "a"]),
            "play_count": np.array([1, 2, 3, 4, 5], dtype=np.int32),
        }
    )


def test_play_count_matrix_follows_the_given_ids() -> None:
    matrix = play_count_matrix(listens_frame(), ["u2", "u1"], ["c", "a"])
    assert matrix.dtype == np.float32 and matrix.has_canonical_format
    np.testing.assert_array_equal(matrix.toarray(), [[0, 0], [3, 6]])  # u1/a summed: 1 + 5


def test_listening_users_and_confidence() -> None:
    listens = listens_frame()
    assert listening_users(listens, ["c"]) == ["u1", "u3"]
    assert listening_users(listens, ["b", "zzz"]) == ["u2"]
    matrix = confidence_matrix(listens, ["u1"], ["a"], alpha=2.0, eps=1e-6)
    np.testing.assert_allclose(matrix.toarray(), [[1 + 2 * np.log1p(6 / 1e-6)]], rtol=1e-6)
