"""recalculation: physics sets and points, factor sets, recalc results

Adds tables only; the 0001 tables are unchanged.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 03:03:33.464757
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "factor_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("provenance", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column("registered_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sha256", name="uq_factor_set_sha256"),
    )
    with op.batch_alter_table("factor_sets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_factor_sets_name"), ["name"], unique=False)

    op.create_table(
        "physics_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("manufacturer", sa.String(length=256), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("serial", sa.String(length=256), nullable=False),
        sa.Column("valid_from", sa.String(length=8), nullable=False),
        sa.Column("valid_to", sa.String(length=8), nullable=True),
        sa.Column("fdd_mm", sa.Float(), nullable=False),
        sa.Column("support_gap_mm", sa.Float(), nullable=False),
        sa.Column("d_ref_mm", sa.Float(), nullable=False),
        sa.Column("measured_by", sa.String(length=256), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("source_file", sa.String(length=1024), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("imported_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("serial", "manufacturer", "valid_from", name="uq_physics_set_validity"),
    )
    with op.batch_alter_table("physics_sets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_physics_sets_serial"), ["serial"], unique=False)

    op.create_table(
        "physics_points",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("physics_set_id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=4), nullable=False),
        sa.Column("filter_material", sa.String(length=4), nullable=False),
        sa.Column("filter_mm", sa.Float(), nullable=True),
        sa.Column("kvp", sa.Float(), nullable=False),
        sa.Column("output_ugy_per_mas", sa.Float(), nullable=False),
        sa.Column("hvl_mm", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["physics_set_id"], ["physics_sets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("physics_points", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_physics_points_physics_set_id"), ["physics_set_id"], unique=False)

    op.create_table(
        "recalc_results",
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("computed_at", sa.DateTime(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("mgd_recalc_mgy", sa.Float(), nullable=True),
        sa.Column("k_mgy", sa.Float(), nullable=True),
        sa.Column("hvl_used_mm", sa.Float(), nullable=True),
        sa.Column("hvl_source", sa.String(length=32), nullable=True),
        sa.Column("g", sa.Float(), nullable=True),
        sa.Column("c", sa.Float(), nullable=True),
        sa.Column("s", sa.Float(), nullable=True),
        sa.Column("t_factor", sa.Float(), nullable=True),
        sa.Column("factor_set", sa.String(length=200), nullable=False),
        sa.Column("factor_set_id", sa.Integer(), nullable=False),
        sa.Column("physics_set_id", sa.Integer(), nullable=True),
        sa.Column("ratio_recalc_to_reported", sa.Float(), nullable=True),
        sa.Column("flags", sa.Text(), nullable=True),
        sa.Column("params_hash", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["factor_set_id"],
            ["factor_sets.id"],
        ),
        sa.ForeignKeyConstraint(["physics_set_id"], ["physics_sets.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("event_id"),
    )
    with op.batch_alter_table("recalc_results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_recalc_results_factor_set_id"), ["factor_set_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_recalc_results_physics_set_id"), ["physics_set_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("recalc_results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recalc_results_physics_set_id"))
        batch_op.drop_index(batch_op.f("ix_recalc_results_factor_set_id"))

    op.drop_table("recalc_results")
    with op.batch_alter_table("physics_points", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_physics_points_physics_set_id"))

    op.drop_table("physics_points")
    with op.batch_alter_table("physics_sets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_physics_sets_serial"))

    op.drop_table("physics_sets")
    with op.batch_alter_table("factor_sets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_factor_sets_name"))

    op.drop_table("factor_sets")
