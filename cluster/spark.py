"""One way to get a SparkSession, so every Spark job (factorization, featurization,
embedding) runs on the cluster the settings name, and tests on `local[2]`.

pyspark is imported here only, lazily: the single-machine path never needs Java.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DEFAULT_MASTER = "local[2]"
MASTER_ENV = "COLDSTART_SPARK_MASTER"


def spark_session(
    master: str | None = None,
    app_name: str = "coldstart",
    config: Mapping[str, str] | None = None,
) -> SparkSession:
    """The active session, or a new one on `master` (default `COLDSTART_SPARK_MASTER`, else
    `local[2]`): a `spark://`, `yarn` or `k8s://` URL for a cluster. Python workers run
    this interpreter, so they import the same packages as the driver."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(master or os.environ.get(MASTER_ENV, DEFAULT_MASTER))
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")  # our own progress bars are shown
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    )
    for key, value in (config or {}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
