"""identities kept as previous after a number change; callback data kept whole

A WhatsApp `user_changed_number` used to overwrite the identity's value; the old number
now stays on the customer with `previous` set and `replaced_by` naming the new value.
`digital_delivery_status.our_id` holds Meta's `biz_opaque_callback_data` as sent back,
up to Meta's 512 characters, instead of a 32-character cut.

Revision ID: 0005
Revises: 0004_reports
Create Date: 2026-12-07 01:45:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004_reports'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('identity', schema=None) as batch_op:
        batch_op.add_column(sa.Column('previous', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('replaced_by',
                                      sqlmodel.sql.sqltypes.AutoString(length=320),
                                      nullable=True))
    with op.batch_alter_table('digital_delivery_status', schema=None) as batch_op:
        batch_op.alter_column('our_id', existing_type=sqlmodel.sql.sqltypes.AutoString(length=32),
                              type_=sqlmodel.sql.sqltypes.AutoString(length=512),
                              existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table('digital_delivery_status', schema=None) as batch_op:
        batch_op.alter_column('our_id', existing_type=sqlmodel.sql.sqltypes.AutoString(length=512),
                              type_=sqlmodel.sql.sqltypes.AutoString(length=32),
                              existing_nullable=True)
    with op.batch_alter_table('identity', schema=None) as batch_op:
        batch_op.drop_column('replaced_by')
        batch_op.drop_column('previous')
