"""The API table: every handler module registers itself here with ``@api``.

Kept apart from the package ``__init__`` (which imports every handler in
``load_all``) so that handlers and the table do not import each other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol

if TYPE_CHECKING:
    from ..broker import Broker
    from ..network.protocol import RequestHeader


@dataclass(slots=True)
class RequestContext:
    broker: "Broker"
    header: "RequestHeader"
    version: int
    connection_id: int
    client_host: str = ""


Handler = Callable[[RequestContext, Any], Awaitable[Any]]


class MessageClass(Protocol):
    """A kafka-python request or response class, as read here (the library is
    untyped; ``API_KEY`` and ``json``, the message's spec, are class properties)."""

    API_KEY: int
    json: dict[str, Any]
    _struct: Any

    def flexible_version_q(self, version: int) -> bool: ...

    def decode(self, data: Any, version: int | None = None, header: bool = False, framed: bool = False) -> Any: ...


class CloseConnection(Exception):
    """Raised by a handler to close the connection instead of answering, in
    request order (Kafka does this for an acks=0 produce that failed)."""


@dataclass(frozen=True, slots=True)
class Api:
    key: int
    request: MessageClass
    response: MessageClass
    handler: Handler
    min_version: int
    max_version: int

    def flexible(self, version: int) -> bool:
        return self.request.flexible_version_q(version)


API_TABLE: dict[int, Api] = {}


def api(request_cls: MessageClass, response_cls: MessageClass, *,
        max_version: int | None = None) -> Callable[[Handler], Handler]:
    """Register ``handler`` for the API of ``request_cls`` at its spec's
    versions, as Kafka advertises them (without a latest version the spec
    marks unstable)."""

    def register(handler: Handler) -> Handler:
        lo, hi = (int(v) for v in _parse_range(request_cls.json["validVersions"]))
        if request_cls.json.get("latestVersionUnstable"):
            hi -= 1     # Kafka does not advertise an unstable version (InitProducerId v6, KIP-939)
        if max_version is not None:
            hi = min(hi, max_version)
        key = request_cls.API_KEY
        API_TABLE[key] = Api(key, request_cls, response_cls, handler, lo, hi)
        return handler

    return register


def _parse_range(spec: str) -> tuple[int, int]:
    lo, _, hi = spec.partition("-")
    return int(lo), int(hi or lo)
