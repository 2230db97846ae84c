"""recordings (calls and voicemail, on the case) and their access audit

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 05:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _s(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        'recording',
        sa.Column('id', _s(32), nullable=False),
        sa.Column('case_id', _s(32), nullable=False),
        sa.Column('customer_id', _s(32), nullable=True),
        sa.Column('call_id', _s(128), nullable=True),
        sa.Column('kind', _s(12), nullable=False),
        sa.Column('backend', _s(12), nullable=False),
        sa.Column('queue_id', _s(64), nullable=True),
        sa.Column('parties', sa.JSON(), nullable=False),
        sa.Column('pauses', sa.JSON(), nullable=False),
        sa.Column('markers', sa.JSON(), nullable=False),
        sa.Column('status', _s(12), nullable=False),
        sa.Column('error', _s(300), nullable=True),
        sa.Column('path', _s(300), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('duration_seconds', sa.Float(), nullable=True),
        sa.Column('size_bytes', sa.Integer(), nullable=True),
        sa.Column('checksum', _s(80), nullable=True),
        sa.Column('retention_days', sa.Integer(), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('deleted_reason', _s(40), nullable=True),
        sa.ForeignKeyConstraint(['case_id'], ['case_.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_recording_case', 'recording', ['case_id'], unique=False)
    op.create_index('ix_recording_expires', 'recording', ['expires_at'], unique=False)
    op.create_index(op.f('ix_recording_customer_id'), 'recording', ['customer_id'],
                    unique=False)
    op.create_table(
        'recording_access',
        sa.Column('id', _s(32), nullable=False),
        sa.Column('recording_id', _s(32), nullable=False),
        sa.Column('username', _s(64), nullable=False),
        sa.Column('role', _s(16), nullable=False),
        sa.Column('action', _s(12), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_recording_access_recording', 'recording_access', ['recording_id'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_recording_access_recording', table_name='recording_access')
    op.drop_table('recording_access')
    op.drop_index(op.f('ix_recording_customer_id'), table_name='recording')
    op.drop_index('ix_recording_expires', table_name='recording')
    op.drop_index('ix_recording_case', table_name='recording')
    op.drop_table('recording')
