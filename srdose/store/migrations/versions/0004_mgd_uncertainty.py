"""recalculated MGD: expanded uncertainty (k = 2) per event

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 10:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recalc_results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mgd_u_mgy", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recalc_results", schema=None) as batch_op:
        batch_op.drop_column("mgd_u_mgy")
