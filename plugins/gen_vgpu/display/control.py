"""The inspection socket's display topics: the monitor's state, hotplug, and the screen."""

from __future__ import annotations

import base64
import struct
import time
import zlib
from typing import Any

from devmodel.device.dma import DmaMap

from ..gtt.ggtt import Ggtt
from .decode import FastPlanes, PageOf, decode_screen
from .display import Display
from .edid import make_edid, preferred_timing, validate_edid
from .png import encode_png

__all__ = ["inspect_display", "page_reader"]


def page_reader(ggtt: Ggtt, dma: DmaMap) -> PageOf:
    """The host page behind a GGTT entry, as the screen decode reads the framebuffer."""

    def page_of(index: int) -> memoryview | None:
        hfn = ggtt.shadow_hfn(index)
        return None if hfn is None else dma.page(hfn)

    return page_of


def inspect_display(
    display: Display | None, page_of: PageOf, what: str, args: list[str], fast: FastPlanes | None = None
) -> dict[str, Any]:
    if display is None:
        raise ValueError("this vGPU has no display (--display none)")
    if what == "screen":
        # "unless CRC": no PNG when the decoded frame still has that CRC (`devmodel view`
        # polls this way, so a picture crosses the socket only when it changed).
        if args and (len(args) != 2 or args[0] != "unless"):
            raise ValueError("screen takes nothing, or: unless CRC32")
        start = time.perf_counter()
        frame = decode_screen(display, page_of, fast)
        decoded = time.perf_counter() - start
        if frame.pipe is None:
            raise ValueError("no pipe drives the monitor: the screen is dark")
        crc = f"{zlib.crc32(struct.pack('<II', frame.width, frame.height)) ^ zlib.crc32(frame.pixels):08x}"
        answer: dict[str, Any] = {
            "width": frame.width,
            "height": frame.height,
            "pipe": "ABC"[frame.pipe],
            "decode_ms": round(decoded * 1e3, 3),
            "crc32": crc,
        }
        if args and args[1] == crc:
            answer["unchanged"] = True
        else:
            png = encode_png(frame.width, frame.height, frame.pixels, level=1)
            answer["png_base64"] = base64.b64encode(png).decode()
        return answer
    if args and args[0] in ("connect", "disconnect"):
        display.hotplug(connected=args[0] == "connect")
    elif args and args[0] == "edid":
        if len(args) != 2:
            raise ValueError("display edid takes the EDID as hex (the command line reads the file)")
        blob = make_edid(args[1]) if "x" in args[1] else validate_edid(bytes.fromhex(args[1]))
        display.hotplug(edid=blob)
    elif args:
        raise ValueError("display takes nothing, connect, disconnect or edid FILE")
    monitor = display.monitor
    return {
        "connected": monitor.connected,
        "preferred": "x".join(map(str, preferred_timing(monitor.edid) or ())),
        "lit_pipe": None if display.lit_pipe() is None else "ABC"[display.lit_pipe() or 0],
        "state": display.describe(),
        "counters": vars(display.counters),
        "aux": dict(monitor.counters),
    }
