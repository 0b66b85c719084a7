"""The thin Celery shell: the app and its configuration, tasks (job id in, ``pipeline`` does the
work), the Celery queue adapter, per-process clients and pool metrics. It imports ``pipeline``,
never ``clipline``; ``clipline worker`` starts it.
"""
