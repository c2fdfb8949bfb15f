"""The VERSION capabilities JSON.

QEMU 11.1 accepts a VERSION reply no larger than its own request (214 bytes), so the server's
JSON stays small and names only what differs from the spec's defaults or what QEMU checks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import MalformedRequest
from .constants import CLIENT_MAX_MSG_FDS_LIMIT, MAX_DATA_XFER_SIZE, MAX_DMA_MAPS, PAGE_SIZE

__all__ = ["Capabilities", "parse_capabilities", "encode_capabilities"]

# The spec's defaults for a peer that names nothing.
_DEFAULT_MAX_MSG_FDS = 1


@dataclass(frozen=True)
class Capabilities:
    max_msg_fds: int = _DEFAULT_MAX_MSG_FDS
    max_data_xfer_size: int = MAX_DATA_XFER_SIZE
    pgsizes: int = PAGE_SIZE
    max_dma_maps: int = MAX_DMA_MAPS
    write_multiple: bool = False
    migration: bool = False


def _int_field(caps: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = caps.get(key, default)
    if type(value) is not int or not lo <= value <= hi:
        raise MalformedRequest(f"capability {key} invalid", value=str(value))
    return value


def parse_capabilities(text: bytes) -> Capabilities:
    """Parse a peer's NUL-terminated JSON (the NUL already stripped)."""
    if not text:
        return Capabilities()
    try:
        doc = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedRequest("VERSION JSON does not parse") from exc
    except RecursionError:
        # Nested deeper than the decoder recurses (a peer can send 200,000 brackets): a
        # malformed request like any other, not a bug of ours.
        raise MalformedRequest("VERSION JSON nested too deeply") from None
    if not isinstance(doc, dict):
        raise MalformedRequest("VERSION JSON is not an object")
    caps = doc.get("capabilities", {})
    if not isinstance(caps, dict):
        raise MalformedRequest("capabilities is not an object")
    wm = caps.get("write_multiple", False)
    if not isinstance(wm, bool):
        raise MalformedRequest("write_multiple is not a boolean")
    return Capabilities(
        max_msg_fds=_int_field(caps, "max_msg_fds", _DEFAULT_MAX_MSG_FDS, 0, CLIENT_MAX_MSG_FDS_LIMIT),
        max_data_xfer_size=_int_field(caps, "max_data_xfer_size", MAX_DATA_XFER_SIZE, 1, 1 << 40),
        pgsizes=_int_field(caps, "pgsizes", PAGE_SIZE, 1, (1 << 63) - 1),
        max_dma_maps=_int_field(caps, "max_dma_maps", MAX_DMA_MAPS, 0, 1 << 32),
        write_multiple=wm,
        migration=isinstance(caps.get("migration"), dict),
    )


def encode_capabilities(caps: Capabilities) -> bytes:
    """Our JSON, NUL-terminated, in the compact form that fits QEMU's reply limit."""
    body: dict[str, Any] = {
        "max_msg_fds": caps.max_msg_fds,
        "max_data_xfer_size": caps.max_data_xfer_size,
        "pgsizes": caps.pgsizes,
        "max_dma_maps": caps.max_dma_maps,
    }
    if caps.write_multiple:
        body["write_multiple"] = True
    return json.dumps({"capabilities": body}, separators=(",", ":")).encode() + b"\0"
