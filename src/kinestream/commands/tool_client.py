"""What ``record`` and ``replay`` do alike with the broker: check its URL, connect to it."""

from __future__ import annotations

from collections.abc import Callable

from kinestream.errors import KinestreamError, UsageError
from kinestream.io.mqtt import ToolClient, parse_broker_url


def check_broker_url(url: str) -> None:
    """A usage error (exit 2) naming the URL when it is not mqtt[s]://host[:port]."""
    try:
        parse_broker_url(url)
    except ValueError as error:
        raise UsageError(str(error)) from None


async def connect_tool_client(
    url: str,
    client_id: str | None,
    on_message: Callable[[str, bytes, bool], None] | None = None,
) -> ToolClient:
    """A connected ToolClient, or a run-time error (exit 1) naming the broker."""
    client = ToolClient(url, client_id=client_id, on_message=on_message)
    try:
        await client.connect()
    except ConnectionError as error:
        raise KinestreamError(str(error)) from None
    return client
