"""tenants.allow_any: sources are denied by default; "every source" is a stored choice.

Before this revision a tenant without rules (``allowed_sources`` NULL) could have Clipline read
any bucket its credentials reach. From now on no rules means no source, and every source needs
``allow_any``. So that an upgrade never silently changes what a tenant can read, a tenant that
was open is converted only as the operator says:

* ``clipline db upgrade --open-tenants allow-any`` (alembic: ``-x open_tenants=allow-any``):
  each open tenant keeps every source, now as a visible ``allow_any``;
* ``--open-tenants deny``: each open tenant reads nothing until given ``--allow`` rules.

Without either, the upgrade stops (``OpenTenantsUndecided``, nothing changed) when an open
tenant could be in use: one with an API key, or any tenant but ``default``. The ``default``
tenant without keys is closed without asking: it serves ``clipline submit`` and the embedded
run, which are the operator's own and read no allowlist. See docs/OPERATIONS.md ("Upgrading to
0007").

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

from pipeline.errors import OpenTenantsUndecided

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

CHOICES = ("allow-any", "deny")
JSONDoc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
tenants = sa.table("tenants", sa.column("id", sa.String), sa.column("allowed_sources", JSONDoc),
                   sa.column("allow_any", sa.Boolean))
api_keys = sa.table("api_keys", sa.column("tenant_id", sa.String),
                    sa.column("revoked_at", sa.DateTime))


def choice() -> str | None:
    """The operator's answer: ``clipline db upgrade --open-tenants`` or ``-x open_tenants=``."""
    given = context.config.attributes.get("open_tenants")
    if given is None:
        given = context.get_x_argument(as_dictionary=True).get("open_tenants")
    if given is not None and given not in CHOICES:
        raise OpenTenantsUndecided(f"--open-tenants must be one of {', '.join(CHOICES)} "
                                   f"(got {given!r})")
    return given


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(tenants.c.id, tenants.c.allowed_sources)).all()
    # JSON null (written by the old code for "no --allow") and SQL NULL alike.
    opened = sorted(r.id for r in rows if r.allowed_sources is None)
    keyed = set(bind.execute(sa.select(api_keys.c.tenant_id)
                             .where(api_keys.c.revoked_at.is_(None))).scalars())
    in_use = [t for t in opened if t != "default" or t in keyed]
    answer = choice()
    if in_use and answer is None:
        shown = ", ".join(in_use[:20]) + (f" and {len(in_use) - 20} more" if len(in_use) > 20
                                          else "")
        raise OpenTenantsUndecided(
            f"{len(in_use)} tenant(s) may read every source today because they have no "
            f"allowlist: {shown}. From this release no allowlist means no source. Run the "
            "upgrade again with --open-tenants allow-any (they keep every source, now shown as "
            "allow_any) or --open-tenants deny (they read nothing until `clipline tenants "
            "create ID --allow bucket/prefix`); nothing was changed")
    op.add_column("tenants", sa.Column("allow_any", sa.Boolean(), nullable=False,
                                       server_default=sa.false()))
    for tenant_id in opened:
        keep = answer == "allow-any" and tenant_id in in_use
        bind.execute(sa.update(tenants).where(tenants.c.id == tenant_id)
                     .values(allowed_sources=[], allow_any=keep))


def downgrade() -> None:
    # Before 0007, "every source" was a tenant without rules.
    bind = op.get_bind()
    bind.execute(sa.update(tenants).where(tenants.c.allow_any.is_(True))
                 .values(allowed_sources=sa.null()))
    # A plain DROP COLUMN (SQLite 3.35+): rebuilding tenants would trip the jobs' foreign keys.
    op.drop_column("tenants", "allow_any")
