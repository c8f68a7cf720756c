"""source_objects.content_sha256; ages in completed years

A SOP instance UID arriving again with other content is told from a
re-encoded copy of the same object by the digest of what srdose kept.
Ages held to 0.01 years gave the birth date back with the study date: they
become completed years (floor).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("source_objects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("content_sha256", sa.String(length=64), nullable=True))
    # floor, not rounding: PostgreSQL's cast to integer rounds, SQLite's truncates
    # (the same as floor for ages, which are positive); SQLite may lack floor()
    if op.get_bind().dialect.name == "sqlite":
        op.execute("UPDATE studies SET age_years = CAST(age_years AS INTEGER) WHERE age_years IS NOT NULL")
    else:
        op.execute("UPDATE studies SET age_years = floor(age_years) WHERE age_years IS NOT NULL")


def downgrade() -> None:
    # the finer ages are not recoverable (that is the point)
    with op.batch_alter_table("source_objects", schema=None) as batch_op:
        batch_op.drop_column("content_sha256")
