"""The callback ``Sender`` on httpx: checked addresses only, a timeout on every call.

Each delivery resolves the URL's host once, checks every address it gets
(``pipeline.callback_address``) and connects to the first one: the URL is rewritten to that
address, the ``Host`` header and TLS's SNI (httpx's ``sni_hostname`` request extension) keep
the name, and the certificate is still verified against the name. So no second resolution
happens between the check and the connection (DNS rebinding). No redirects (a callback URL
answers itself), no proxies from the environment (a proxy would resolve the name again), no
connection kept for another delivery, and at most ``MAX_ANSWER_BYTES`` of an answer read.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence

import httpx

from pipeline.callback_address import Address, CallbackPolicy, Resolver, check_url, target

MAX_ANSWER_BYTES = 64 * 1024


def system_resolver(host: str, port: int) -> Sequence[str]:
    """The addresses the system's resolver gives ``host`` now. Raises ``OSError``."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


class HttpSender:
    def __init__(self, timeout: float = 10.0, policy: CallbackPolicy | None = None,
                 resolve: Resolver = system_resolver) -> None:
        self.policy = policy or CallbackPolicy()
        self._resolve = resolve
        self._client = httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False,
                                    limits=httpx.Limits(max_keepalive_connections=0))

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> str | None:
        """POST ``body`` to ``url``; None when the receiver answered 2xx, else what went wrong.

        Raises ``CallbackRefused`` when the URL's address is not one Clipline calls (a final
        answer: the caller records it and does not retry)."""
        try:
            addresses = check_url(url, self.policy, self._resolve)
        except OSError as exc:
            return f"cannot resolve the callback host: {exc}"[:500]
        _, host, _ = target(url)
        request = self._request(url, addresses[0], host, body, headers)
        try:
            answer = self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:500]
        try:
            read = 0
            for chunk in answer.iter_raw():  # the answer's body is not needed: cap what is read
                read += len(chunk)
                if read >= MAX_ANSWER_BYTES:
                    break
        except httpx.HTTPError:
            pass  # the answer's status is already in hand; its body was never needed
        finally:
            answer.close()
        if 200 <= answer.status_code < 300:
            return None
        return f"HTTP {answer.status_code}"

    def _request(self, url: str, address: Address, host: str, body: bytes,
                 headers: Mapping[str, str]) -> httpx.Request:
        original = httpx.URL(url)
        pinned = original.copy_with(host=str(address))
        sent = {**headers, "Host": original.netloc.decode("ascii")}
        extensions = {"sni_hostname": host} if original.scheme == "https" else {}
        return self._client.build_request("POST", pinned, content=body, headers=sent,
                                          extensions=extensions)

    def close(self) -> None:
        self._client.close()

