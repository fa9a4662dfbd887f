"""Alembic environment of the catalogue.

`catalogue.db.open_catalogue` runs the migrations on its own connection, handed over in
`config.attributes["connection"]` (inside the transaction that also holds its migration
lock). From the command line (`alembic -c catalogue/alembic.ini upgrade head`, or
`revision --autogenerate` when the models change) the URL comes from
`COLDSTART_DATABASE_URL`.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection, create_engine

import catalogue.events  # noqa: F401  (registers track_events on Base.metadata)
import catalogue.runs  # noqa: F401  (registers pipeline_runs on Base.metadata)
import catalogue.vectors  # noqa: F401  (registers track_vectors on Base.metadata)
from catalogue.models import Base


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    url = os.environ.get("COLDSTART_DATABASE_URL")
    if not url:
        raise SystemExit("set COLDSTART_DATABASE_URL to the catalogue database URL")
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            run_migrations(connection)
    finally:
        engine.dispose()


main()
