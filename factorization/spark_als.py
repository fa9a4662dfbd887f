"""WMF on Apache Spark: MLlib's implicit-feedback ALS behind the `WMFEngine` seam.

For listening logs that outgrow one machine (`--engine spark`). The confidences reach Spark
as Parquet (`user`, `song`, `rating`) written with pyarrow and read by `spark.read.parquet`,
so on a cluster the listens never pass through the driver as Python objects; the factors
come back through Arrow as numpy arrays in our row order.

Same objective as implicit, as far as Spark allows. Spark 4's implicit ALS
(`ml/recommendation/ALS.scala`, `computeFactors` with `CholeskySolver`) solves, for a user
`u` with ratings `r_ui` over songs with factors `y_i`:

    (YᵀY + Σ_{r_ui > 0} a r_ui y_i y_iᵀ + λ_s n_u I) x_u = Σ_{r_ui > 0} (1 + a r_ui) y_i

(`NormalEquation.add(y_i, 1 + c1, c1)` with `c1 = a |r_ui|` and the Gramian `YᵀY` merged in;
`n_u` = the user's ratings > 0; `a` = Spark's `alpha`), and the same for songs. Ours
(`factorization.wmf`, Hu, Koren & Volinsky 2008) is

    (YᵀY + Σ_i (c_ui − 1) y_i y_iᵀ + λ I) x_u = Σ_i c_ui y_i,   c_ui = 1 + alpha log(1 + r/eps).

- Confidence: `a r_ui = c_ui − 1` makes the data terms identical. The engine sees only
  confidences (the seam's convention), so it writes `rating = c − 1` and sets `a = 1`: the
  same as `rating = log(1 + plays/eps)` with `a = alpha`. A pair whose
  confidence is 1 (alpha 0) would be rating 0, which Spark reads as "not listened": refused.
- Regularization: Spark multiplies `regParam` by each row's number of ratings (ALS-WR, Zhou
  et al. 2008), for users and songs alike, with no switch to turn it off; ours is one λ for
  every row. They agree only when every row has the same count, so λ is mapped to
  `regParam = λ (n_users + n_songs) / (2 nnz)` (rows with a listen): the total penalty
  weight `Σ_rows regParam n_row = regParam · 2 nnz` equals implicit's `λ (n_users + n_songs)`,
  and a row with the mean count gets exactly λ; busier rows get more, sparser ones less.
  `regularization` (what the search picks and the manifest records) is λ on both engines;
  `reg_param` is what Spark was given.

Fold-in (`fold_in_songs`) is the exact item step, solved in numpy (float64) on the driver
(`factorization.fold_in`), with Spark's per-row rule `regParam · n_i`, so that a folded-in
song is regularized like a fitted one (implicit's `recalculate_item` takes one λ for all
rows, so it cannot do this).

Spark's public API takes no initial factors, so there is no warm start on this engine:
`fit(..., initial=...)` raises `ValueError` (the nightly run's warm start stays on implicit).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import scipy.sparse as sp

from factorization.fold_in import FixedFactors, Regularization
from factorization.wmf import IterationCallback

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

LISTENS_SCHEMA = pa.schema([("user", pa.int32()), ("song", pa.int32()), ("rating", pa.float32())])
PARQUET_ROWS_PER_GROUP = 4_000_000  # ~48 MB per row group: bounded driver memory while writing
SPARK_CONFIG = {"spark.ui.showConsoleProgress": "false"}  # our progress bar is the one shown
STAGING_ENV = "COLDSTART_SPARK_STAGING"  # the default staging_dir (a cluster needs one)


def spark_reg_param(regularization: float, user_song_confidence: sp.csr_matrix) -> float:
    """Spark's `regParam` for our λ on this matrix: `λ (n_users + n_songs) / (2 nnz)`,
    counting users and songs with at least one stored value (see the module docstring)."""
    matrix = sp.csr_matrix(user_song_confidence)
    if matrix.nnz == 0:
        raise ValueError("the confidence matrix has no stored value: nothing to factorize")
    n_users = int(np.count_nonzero(np.diff(matrix.indptr)))
    n_songs = int(np.unique(matrix.indices).size)
    return float(regularization) * (n_users + n_songs) / (2.0 * matrix.nnz)


def write_listens_parquet(
    user_song_confidence: sp.csr_matrix,
    path: str,
    filesystem: pafs.FileSystem | None = None,
) -> None:
    """Write the stored pairs of `(n_users, n_songs)` confidences as Parquet rows
    `(user int32, song int32, rating float32 = confidence − 1)`, row group by row group, so
    that at most `PARQUET_ROWS_PER_GROUP` pairs are materialized at once."""
    matrix = sp.csr_matrix(user_song_confidence)
    with pq.ParquetWriter(path, LISTENS_SCHEMA, filesystem=filesystem) as writer:
        for start in range(0, matrix.nnz, PARQUET_ROWS_PER_GROUP):
            stop = min(start + PARQUET_ROWS_PER_GROUP, matrix.nnz)
            positions = np.arange(start, stop)
            users = np.searchsorted(matrix.indptr, positions, side="right") - 1
            ratings = matrix.data[start:stop].astype(np.float64) - 1.0
            writer.write_table(
                pa.table(
                    {
                        "user": users.astype(np.int32),
                        "song": matrix.indices[start:stop].astype(np.int32),
                        "rating": ratings.astype(np.float32),
                    },
                    schema=LISTENS_SCHEMA,
                )
            )


@contextmanager
def _staging_folder(staging_dir: str | None) -> Iterator[tuple[pafs.FileSystem, str, str]]:
    """A fresh folder for the listens Parquet under `staging_dir` (a local folder or a URL
    pyarrow writes to: `hdfs://`, `s3://`, ...), or under the local temp folder when None;
    removed afterwards. Yields `(filesystem, path in it, URI for Spark)`."""
    name = f"coldstart-als-{uuid.uuid4().hex}"
    if staging_dir is None:
        filesystem: pafs.FileSystem = pafs.LocalFileSystem()
        path = os.path.join(tempfile.gettempdir(), name)
        uri = f"file://{path}"
    elif "://" in staging_dir:
        filesystem, root = pafs.FileSystem.from_uri(staging_dir)
        path = f"{root.rstrip('/')}/{name}"
        uri = f"{staging_dir.rstrip('/')}/{name}"
    else:
        filesystem = pafs.LocalFileSystem()
        path = os.path.join(os.path.abspath(staging_dir), name)
        uri = f"file://{path}"
    filesystem.create_dir(path)
    try:
        yield filesystem, path, uri
    finally:
        filesystem.delete_dir(path)


def _factors_in_row_order(frame: DataFrame, n_rows: int, n_factors: int) -> np.ndarray:
    """`(n_rows, n_factors)` float32 from Spark's `(id, features)` factors, through Arrow;
    rows Spark has no factors for (no listen) stay zero, as implicit leaves them."""
    table = frame.toArrow()
    factors = np.zeros((n_rows, n_factors), dtype=np.float32)
    if table.num_rows:
        ids = table.column("id").to_numpy()
        values = table.column("features").combine_chunks().flatten().to_numpy()
        factors[ids] = values.reshape(-1, n_factors)
    return factors


class SparkALSEngine:
    """Spark MLlib's `ALS(implicitPrefs=True)`, with our confidences and λ (module docstring).

    `master`: a Spark master URL (`spark://`, `yarn`, `k8s://`, `local[N]`), default
    `cluster.spark`'s (`COLDSTART_SPARK_MASTER`, else `local[2]`); an active session is
    reused. `staging_dir`: where the listens Parquet is written for the job, default
    `COLDSTART_SPARK_STAGING`, else the local temp folder, which only a `local` master can
    read: on a cluster it must be a folder or URL every executor reads (HDFS, S3, NFS), and
    a fit on a non-local master without one is refused (ValueError) before any work.
    `num_blocks`: Spark's user and item blocks (the parallelism of each half-step), default
    the session's default parallelism (its cores) rather than Spark's fixed 10, which on
    `local[2]` only adds tasks. After `fit`, `reg_param` is the `regParam` Spark was given
    (`fold_in_songs` reuses it) and `fitted_on` the master URL it ran on.
    """

    name = "spark.ml.ALS"

    def __init__(
        self,
        factors: int = 50,
        regularization: float = 100.0,
        iterations: int = 15,
        seed: int = 0,
        master: str | None = None,
        staging_dir: str | None = None,
        num_blocks: int | None = None,
    ) -> None:
        self.factors = factors
        self.regularization = float(regularization)
        self.iterations = iterations
        self.seed = seed
        self.master = master
        self.staging_dir = staging_dir or os.environ.get(STAGING_ENV) or None
        self.num_blocks = num_blocks
        self.reg_param: float | None = None
        self.fitted_on: str | None = None

    def fit(
        self,
        user_song_confidence: sp.csr_matrix,
        on_iteration: IterationCallback | None = None,
        initial: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """As `WMFEngine.fit`; Spark reports no iterations, so `on_iteration` is called once,
        at the end. `initial` is refused: Spark's ALS has no way to start from given factors."""
        if initial is not None:
            raise ValueError(
                "Spark's ALS cannot start from given factors (no initial factors in its API):"
                " warm start with the implicit engine"
            )
        matrix = sp.csr_matrix(user_song_confidence)
        if not matrix.has_canonical_format:
            matrix = matrix.copy()
            matrix.sum_duplicates()
        if matrix.nnz and float(matrix.data.min()) <= 1.0:
            raise ValueError(
                "a stored confidence is <= 1 (alpha 0?): Spark would read it as not listened"
            )
        reg_param = spark_reg_param(self.regularization, matrix)

        from pyspark.ml.recommendation import ALS

        from cluster.spark import spark_session

        spark = spark_session(self.master, app_name="coldstart-wmf", config=SPARK_CONFIG)
        master = str(spark.sparkContext.master)
        if self.staging_dir is None and not master.startswith("local"):
            raise ValueError(
                f"Spark master {master} runs executors elsewhere: give a staging folder"
                f" they all read (staging_dir or ${STAGING_ENV}) for the listens"
            )
        n_users, n_songs = matrix.shape
        num_blocks = self.num_blocks or spark.sparkContext.defaultParallelism
        with _staging_folder(self.staging_dir) as (filesystem, folder, uri):
            write_listens_parquet(matrix, f"{folder}/listens.parquet", filesystem)
            als = ALS(
                rank=self.factors,
                maxIter=self.iterations,
                regParam=reg_param,
                implicitPrefs=True,
                alpha=1.0,  # the ratings already are confidence - 1
                userCol="user",
                itemCol="song",
                ratingCol="rating",
                nonnegative=False,
                numUserBlocks=num_blocks,
                numItemBlocks=num_blocks,
                seed=self.seed,
            )
            model = als.fit(spark.read.parquet(uri))
            # collected before the Parquet goes: a lost cached block is recomputed from it
            user_factors = _factors_in_row_order(model.userFactors, n_users, self.factors)
            song_factors = _factors_in_row_order(model.itemFactors, n_songs, self.factors)
        if not (np.isfinite(user_factors).all() and np.isfinite(song_factors).all()):
            raise ValueError(f"Spark ALS returned non-finite factors (regParam {reg_param:g})")
        self.reg_param, self.fitted_on = reg_param, master
        if on_iteration is not None:
            on_iteration(self.iterations, self.iterations)
        return user_factors, song_factors

    def fold_in_songs(
        self, user_factors: np.ndarray, song_user_confidence: sp.csr_matrix
    ) -> np.ndarray:
        """As `WMFEngine.fold_in_songs`, with Spark's per-row regularization `reg_param · n_i`
        (`n_i` the song's listeners; `factorization.fold_in`); needs a `fit` first, for its
        `reg_param`. A song with no listener gets a zero vector."""
        if self.reg_param is None:
            raise ValueError("fold_in_songs needs the regParam of a fit: call fit first")
        users = FixedFactors(np.ascontiguousarray(user_factors, dtype=np.float32))
        return users.fold_in(song_user_confidence, Regularization(self.reg_param, per_listen=True))
