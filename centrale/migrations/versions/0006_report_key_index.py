"""report_bucket_total indexed by (dim, key, bucket): a report paged by key reads its
page's keys only

An agent report of a month by the hour is 148,800 rows (200 agents); the screen and the
API page it by key (reports/service.py). Without this index a page of 25 agents still
scans every agent's totals of the month (the primary key leads with dim, bucket).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 05:10:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('report_bucket_total', schema=None) as batch_op:
        batch_op.create_index('ix_report_total_dim_key', ['dim', 'key', 'bucket'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('report_bucket_total', schema=None) as batch_op:
        batch_op.drop_index('ix_report_total_dim_key')
