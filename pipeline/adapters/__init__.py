"""The only code that imports vendor libraries: databases, object stores, inference runtimes.

One subpackage per port of ``pipeline.ports``, each holding the real adapters and the in-memory
fake beside them: ``ledger`` (the job ledger on SQL, its schema and engines, the tenant store),
``storage`` (object stores), ``segmenters`` (models), ``events`` (S3 notifications from SQS),
``callbacks`` (completion callbacks over HTTP) and ``queue`` (the in-memory queue; the Celery one
is ``workers.queue``, since ``pipeline`` never imports Celery).
"""
