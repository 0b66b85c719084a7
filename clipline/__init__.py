"""Clipline's shell for the command line: ``clipline.cli`` holds every ``clipline`` command.

It is the outermost layer: it may import ``pipeline`` (the core and its adapters) and ``workers``
(the Celery shell), and neither of them imports it.
"""
