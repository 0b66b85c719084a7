"""The ledger's Alembic migrations. Shipped in the wheel as ``pipeline.migrations`` (see
pyproject.toml), so that ``clipline db upgrade`` finds them from any install.
"""
