"""The ``Queue`` port's in-memory fake. The real queue publishes to Celery, which ``pipeline``
never imports, so it lives in the worker shell: ``workers.queue.CeleryQueue``.
"""
