"""the event list's indexes: a unit's events by view (covering), studies by date and time

The event list filtered by unit (and view) read every event of the unit from the events table
through ``ix_events_device_id``. ``ix_events_unit_view`` holds the unit, view, study and source
object of every event, so the list's filter reads the index alone (then the study's date); led by
``device_id`` it serves every query the single-column index served, which is dropped. PostgreSQL
gets the event id included (SQLite keeps it in every index), so that it too answers from the index.

``ix_studies_date_time`` (SQLite) and ``ix_studies_newest`` (PostgreSQL, declared DESC NULLS LAST),
replacing ``ix_studies_study_date``, are the list's default order, newest study first: a page is
read by walking the index, not by sorting every event.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 15:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_events_unit_view",
        "events",
        ["device_id", "view", "study_id", "source_object_id"],
        unique=False,
        postgresql_include=["id"],
    )
    op.drop_index("ix_events_device_id", table_name="events")
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_studies_newest",
            "studies",
            [sa.text("study_date DESC NULLS LAST"), sa.text("study_time DESC NULLS LAST")],
            unique=False,
        )
    else:
        op.create_index("ix_studies_date_time", "studies", ["study_date", "study_time"], unique=False)
    op.drop_index("ix_studies_study_date", table_name="studies")


def downgrade() -> None:
    op.create_index("ix_studies_study_date", "studies", ["study_date"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_studies_newest", table_name="studies")
    else:
        op.drop_index("ix_studies_date_time", table_name="studies")
    op.create_index("ix_events_device_id", "events", ["device_id"], unique=False)
    op.drop_index("ix_events_unit_view", table_name="events")
