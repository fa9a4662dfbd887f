"""Sparse listen matrices built straight from the categorical codes of `Dataset.listens`.

Ids are mapped once per distinct id (`Index.get_indexer` over the categories), then every
listen is a gather through those codes: no Python loop over 48M listens, and int32 row and
column indices throughout.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from factorization.confidence import confidence


def _positions(column: pd.Series, ids: Sequence[str]) -> np.ndarray:
    """Position of each listen's id in `ids`, -1 where absent: `(n_listens,)` int32."""
    lookup = pd.Index(ids).get_indexer(column.cat.categories).astype(np.int32)
    codes = column.cat.codes.to_numpy()
    return np.where(codes >= 0, lookup[codes], np.int32(-1))


def listening_users(listens: pd.DataFrame, song_ids: Sequence[str]) -> list[str]:
    """Ids of the users with at least one listen of `song_ids`, in the listens' category order."""
    heard = _positions(listens["song_id"], song_ids) >= 0
    user_codes = listens["user_id"].cat.codes.to_numpy()[heard]
    categories = listens["user_id"].cat.categories
    present = np.bincount(user_codes, minlength=len(categories)) > 0
    return categories[present].tolist()


def play_count_matrix(
    listens: pd.DataFrame, user_ids: Sequence[str], song_ids: Sequence[str]
) -> sp.csr_matrix:
    """Play counts `(len(user_ids), len(song_ids))` float32 CSR, rows and columns in id order.

    Listens of other users or songs are left out; repeated (user, song) rows are summed.
    Indices are sorted and unique, as implicit and fancy indexing expect.
    """
    rows = _positions(listens["user_id"], user_ids)
    columns = _positions(listens["song_id"], song_ids)
    keep = (rows >= 0) & (columns >= 0)
    counts = listens["play_count"].to_numpy()[keep].astype(np.float32)
    matrix = sp.coo_matrix(
        (counts, (rows[keep], columns[keep])), shape=(len(user_ids), len(song_ids))
    ).tocsr()
    matrix.sum_duplicates()
    return matrix


def confidence_matrix(
    listens: pd.DataFrame,
    user_ids: Sequence[str],
    song_ids: Sequence[str],
    alpha: float,
    eps: float,
) -> sp.csr_matrix:
    """`play_count_matrix` with every stored count replaced by its confidence (float32 CSR)."""
    matrix = play_count_matrix(listens, user_ids, song_ids)
    confidence(matrix.data, alpha=alpha, eps=eps, out=matrix.data)
    return matrix
