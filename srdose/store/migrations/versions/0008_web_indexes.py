"""index devices.serial: the web app's unit filter and unit pages

The event list filters on the unit's serial number, which is on ``devices``; without an index
there SQLite's planner (with no statistics) scans every event and joins the unit afterwards. With
it the plan starts from the unit and reads only its events through ``ix_events_device_id``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 13:10:00
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_devices_serial", "devices", ["serial"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_devices_serial", table_name="devices")
