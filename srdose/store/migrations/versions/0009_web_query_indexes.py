"""index the superseded source objects: the overview's per-unit counts

The overview counts each unit's live events as all its events (``ix_events_device_id`` alone)
less those of superseded source objects; this partial index finds those few objects directly.
It is partial (``superseded_by IS NOT NULL``) so that a query for live objects (``IS NULL``)
cannot use it: without statistics SQLite's planner would otherwise read every live object
through it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 13:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_source_objects_superseded",
        "source_objects",
        ["superseded_by"],
        unique=False,
        sqlite_where=sa.text("superseded_by IS NOT NULL"),
        postgresql_where=sa.text("superseded_by IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_source_objects_superseded", table_name="source_objects")
