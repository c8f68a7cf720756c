"""Alembic environment: srdose runs migrations on the connection it hands in."""

from alembic import context
from sqlalchemy import create_engine

from srdose.store.models import Base, on_engine

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=True,
            include_object=on_engine(connection.dialect.name),
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("alembic: set sqlalchemy.url or pass a connection in config.attributes")
    engine = create_engine(url)
    with engine.begin() as conn:
        context.configure(
            connection=conn,
            target_metadata=target_metadata,
            render_as_batch=True,
            include_object=on_engine(conn.dialect.name),
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
