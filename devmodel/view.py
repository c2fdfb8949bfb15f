"""`devmodel view`: a small web page that shows a running device's screen beside its counters.

The page is served by the standard library's HTTP server and talks to nothing but this
process; this process asks the device model through its inspection socket, the same one-line
JSON protocol as `devmodel inspect` (topics ``screen`` and ``stats``). The page polls
``/state``; each poll asks the device for its screen *unless* the decoded frame still has the
CRC the view holds, so a PNG crosses the socket only when the picture changed (a flip, or
fbcon drawing through the aperture), and the page reloads its ``<img>`` only then.

Everything the page needs is inline (no external resources): it works offline and in a
headless browser.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .transport.control import query

__all__ = ["PAGE", "ViewServer", "ViewState"]

log = logging.getLogger(__name__)

QUERY_TIMEOUT = 30.0  # seconds: a loaded device answers between vfio-user messages


class ViewState:
    """What the view knows of the device: the last frame (PNG and its CRC), its sequence
    number, and the last counters. Shared by the HTTP threads, under one lock."""

    def __init__(self, control: str) -> None:
        self.control = control
        self.lock = threading.Lock()
        self.frame = 0  # bumped whenever the picture changes
        self.crc: str | None = None
        self.png: bytes | None = None
        self.size = (0, 0)
        self.dark_reason: str | None = "not asked yet"

    def _ask(self, what: str, args: list[str]) -> dict[str, Any]:
        return query(self.control, {"what": what, "args": args}, timeout=QUERY_TIMEOUT)

    def refresh(self) -> dict[str, Any]:
        """Ask the device for its screen (unless unchanged) and its counters; the JSON the
        page polls."""
        with self.lock:
            screen = self._ask("screen", ["unless", self.crc] if self.crc else [])
            if "error" in screen:
                if self.dark_reason is None:
                    self.frame += 1
                self.dark_reason, self.crc, self.png = str(screen["error"]), None, None
            elif not screen.get("unchanged"):
                self.frame += 1
                self.dark_reason = None
                self.crc = str(screen["crc32"])
                self.png = base64.b64decode(screen["png_base64"])
                self.size = (int(screen["width"]), int(screen["height"]))
            stats = self._ask("stats", [])
            return {
                "frame": self.frame,
                "crc32": self.crc,
                "width": self.size[0],
                "height": self.size[1],
                "dark": self.dark_reason,
                "decode_ms": screen.get("decode_ms"),
                "device": stats.get("device"),
                "counters": stats.get("counters", {}),
                "error": stats.get("error"),
            }

    def screen_png(self) -> tuple[int, bytes] | None:
        with self.lock:
            return None if self.png is None else (self.frame, self.png)


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>devmodel view</title>
<style>
body { font: 14px sans-serif; margin: 1em; background: #eee; }
main { display: flex; gap: 1.5em; align-items: flex-start; }
#screen { background: #000; image-rendering: pixelated; border: 1px solid #444; }
#dark { padding: 2em; background: #222; color: #ccc; }
table { border-collapse: collapse; background: #fff; }
td, th { padding: 2px 8px; text-align: left; border-bottom: 1px solid #ddd; }
td.n { text-align: right; font-family: monospace; }
th[colspan] { background: #ccd; }
</style></head>
<body>
<h1 id="title">devmodel view</h1>
<main>
<div><img id="screen" alt="the guest's screen" hidden><div id="dark">waiting for the device</div>
<p id="frameinfo"></p></div>
<table id="counters"><tbody></tbody></table>
</main>
<script>
"use strict";
const img = document.getElementById("screen");
const dark = document.getElementById("dark");
const info = document.getElementById("frameinfo");
const table = document.querySelector("#counters tbody");
// What the page shows: the frame number of the image it has loaded (data-frame on the img).
let shown = -1;
function row(cells) {
  const tr = document.createElement("tr");
  for (const [text, cls, span] of cells) {
    const td = document.createElement(span ? "th" : "td");
    td.textContent = text;
    if (cls) td.className = cls;
    if (span) td.colSpan = span;
    tr.appendChild(td);
  }
  return tr;
}
function showCounters(groups) {
  const rows = [];
  for (const [group, values] of Object.entries(groups)) {
    rows.push(row([[group, "", 2]]));
    for (const [name, value] of Object.entries(values)) {
      const tr = row([[name], [String(value), "n"]]);
      tr.dataset.counter = group + "." + name;
      rows.push(tr);
    }
  }
  table.replaceChildren(...rows);
}
async function poll() {
  try {
    const state = await (await fetch("/state", {cache: "no-store"})).json();
    document.getElementById("title").textContent = "devmodel view: " + (state.device || "?");
    if (state.dark !== null) {
      img.hidden = true; dark.hidden = false; dark.textContent = state.dark;
      img.dataset.frame = String(state.frame); shown = state.frame;
    } else if (state.frame !== shown) {
      const next = new Image();
      next.src = "/screen.png?frame=" + state.frame;
      await next.decode();
      img.src = next.src; img.width = state.width; img.height = state.height;
      img.dataset.frame = String(state.frame); img.dataset.crc32 = state.crc32;
      img.hidden = false; dark.hidden = true; shown = state.frame;
    }
    info.textContent = state.dark === null ?
      `${state.width}x${state.height}, frame ${state.frame}, decoded in ${state.decode_ms} ms` : "";
    showCounters(state.counters);
  } catch (e) {
    info.textContent = "device not answering: " + e;
  }
  setTimeout(poll, 250);
}
poll();
</script>
</body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    server: ViewServer

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        if path == "/":
            self._send(HTTPStatus.OK, "text/html; charset=utf-8", PAGE.encode())
        elif path == "/state":
            try:
                state = self.server.state.refresh()
            except (OSError, ValueError, TypeError) as exc:
                self._send(HTTPStatus.BAD_GATEWAY, "text/plain", f"device: {exc}".encode())
                return
            self._send(HTTPStatus.OK, "application/json", json.dumps(state).encode())
        elif path == "/screen.png":
            got = self.server.state.screen_png()
            if got is None:
                self._send(HTTPStatus.NOT_FOUND, "text/plain", b"the screen is dark")
            else:
                self._send(HTTPStatus.OK, "image/png", got[1])
        else:
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found")

    def _send(self, status: HTTPStatus, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class ViewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, control: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = ViewState(control)
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/"
