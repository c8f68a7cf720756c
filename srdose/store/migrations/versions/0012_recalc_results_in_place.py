"""recalculated results rewritten in place: no index on their factor set or physics set

A recalculation rewrites a result row per event. Each of the two secondary indexes made every
rewritten row three index entries instead of one, and on PostgreSQL kept an update from staying
on its page (a HOT update needs every indexed column unchanged): a million results took 12 s to
upsert, 5.6 s without them. Nothing reads results by factor set or physics set; the foreign keys
stay (deleting a physics set, which is rare, now scans the results). On PostgreSQL the table's
pages are also left half empty (fillfactor 50) so that a result's new version fits beside its old.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-27 22:30:00
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_recalc_results_factor_set_id", table_name="recalc_results")
    op.drop_index("ix_recalc_results_physics_set_id", table_name="recalc_results")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE recalc_results SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE recalc_results RESET (fillfactor)")
    op.create_index("ix_recalc_results_physics_set_id", "recalc_results", ["physics_set_id"], unique=False)
    op.create_index("ix_recalc_results_factor_set_id", "recalc_results", ["factor_set_id"], unique=False)
