"""The callback ``Sender`` on httpx: one pooled client per process, a timeout on every call."""

from __future__ import annotations

from collections.abc import Mapping

import httpx


class HttpSender:
    def __init__(self, timeout: float = 10.0) -> None:
        # No redirects: a callback URL answers itself, it does not send us elsewhere.
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> str | None:
        try:
            answer = self._client.post(url, content=body, headers=dict(headers))
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= answer.status_code < 300:
            return None
        return f"HTTP {answer.status_code}"

    def close(self) -> None:
        self._client.close()
