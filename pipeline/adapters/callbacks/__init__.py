"""Completion callbacks: the ``Sender`` that posts them over HTTP (httpx). Which callbacks are
due, their signature and their retries are decided in ``pipeline.callbacks``.
"""
