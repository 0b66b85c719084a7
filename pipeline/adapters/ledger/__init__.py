"""The ``JobLedger`` port: the job ledger on PostgreSQL or SQLite, and its in-memory fake.

It owns the ledger's database whole: the tables (``schema``), the engines and the Alembic
migrations that build them (``database``; the migrations themselves are the top-level
``migrations/``, shipped as ``pipeline.migrations``), ``SqlLedger`` (``sql``) with the mixins
and statements it is made of, the bulk insert, the tenant store (tenants and API keys live in the
same database), and ``MemoryLedger`` (``memory``), held to the same contract suite.
"""
