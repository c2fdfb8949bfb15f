"""The command line: ``devmodel serve --socket PATH --device NAME`` and friends."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence

from . import __version__, logbound, trace
from .accel import StaleAccelerator
from .device.plugin import load_plugin
from .errors import TransportError
from .transport.control import ControlServer, control_path, query
from .transport.server import Server
from .transport.unix import listen_unix
from .vfio_user.connection import ServerOptions
from .vfio_user.constants import MAX_DMA_MAPS

__all__ = ["main"]

log = logging.getLogger("devmodel")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="devmodel", description="Device models served over vfio-user.")
    p.add_argument("--version", action="version", version=f"devmodel {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="serve a device on a UNIX socket (does not daemonize)")
    where = s.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--socket", "--socket-path", dest="socket", metavar="PATH", help="socket to create and listen on"
    )
    where.add_argument("--fd", type=int, metavar="N", help="an already listening socket (socket activation)")
    s.add_argument("--device", required=True, help="device plugin name, e.g. gen_vgpu")
    s.add_argument("--platform", choices=["bdw", "skl"], default="bdw", help="GEN platform (gen_vgpu)")
    s.add_argument(
        "--display",
        choices=["dp", "none"],
        default="dp",
        help="dp: one virtual DisplayPort monitor (default); none: headless, the display fused off (gen_vgpu)",
    )
    s.add_argument(
        "--edid",
        metavar="MODE|FILE",
        help="the monitor's EDID: 1024x768 (default) or 1920x1080 preferred, or an EDID file (gen_vgpu)",
    )
    s.add_argument(
        "--write-multiple",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="advertise REGION_WRITE_MULTI to the client (default: on)",
    )
    s.add_argument(
        "--refuse-unsealed-memory",
        action="store_true",
        help="refuse (EPERM) DMA_MAP fds not sealed against shrinking, e.g. a file backend on "
        "/dev/shm or hugetlbfs (default: accept, warn once)",
    )
    s.add_argument(
        "--accel",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve region messages with the compiled accelerator when it is installed "
        "(default: on unless DEVMODEL_ACCEL=0)",
    )
    s.add_argument("--control", metavar="PATH", help="inspection socket (default: SOCKET.ctl; none with --fd)")
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    limits = s.add_argument_group("bounds on what a client or guest can make the device hold")
    limits.add_argument(
        "--max-dma-maps",
        type=int,
        default=MAX_DMA_MAPS,
        metavar="N",
        help=f"DMA windows, advertised to the client (default {MAX_DMA_MAPS})",
    )
    limits.add_argument(
        "--max-device-pages",
        type=int,
        metavar="N",
        help="pages the device allocates itself: scratch, shadow tables (default 65536)",
    )
    limits.add_argument(
        "--max-shadow-pages",
        type=int,
        metavar="N",
        help="shadow PPGTT tables, reclaimed least recently used (gen_vgpu; default 16384)",
    )
    limits.add_argument(
        "--max-shadow-mms",
        type=int,
        metavar="N",
        help="shadow PPGTTs (one per set of guest roots): the least recently used idle one goes, "
        "then new roots are refused (gen_vgpu; default 1024)",
    )
    limits.add_argument(
        "--watchdog",
        type=float,
        metavar="SECONDS",
        help="engine time a workload may run before it is hung (gen_vgpu; default: no limit)",
    )
    s.add_argument(
        "--log-burst",
        type=int,
        default=20,
        metavar="N",
        help="at most N lines of one kind of message per --log-interval (default 20)",
    )
    s.add_argument("--log-interval", type=float, default=60.0, metavar="S", help="seconds (default 60)")
    s.add_argument(
        "--trace",
        metavar="PATTERN[,PATTERN]",
        help="turn on the trace events whose names match these globs, e.g. 'execlist_*,csb' (devmodel trace --list)",
    )
    s.add_argument("--trace-file", metavar="F", help="write trace lines to F (default: standard error)")
    s.add_argument(
        "--trace-burst",
        type=int,
        default=trace.DEFAULT_TRACE_BURST,
        metavar="N",
        help=f"at most N lines of one trace event per --log-interval (default {trace.DEFAULT_TRACE_BURST})",
    )

    t = sub.add_parser("trace", help="the trace events a device can emit")
    t.add_argument("--list", action="store_true", required=True, help="print every event with its help line")
    t.add_argument("--device", default="gen_vgpu", help="the device plugin whose events to include (default gen_vgpu)")

    i = sub.add_parser("inspect", help="ask a running server about its device")
    i.add_argument("--socket", required=True, metavar="PATH", help="the server's vfio-user socket (or --control)")
    i.add_argument("--control", metavar="PATH", help="the inspection socket, if not SOCKET.ctl")
    i.add_argument(
        "what",
        choices=["ggtt", "ppgtt", "stats", "display", "screen"],
        help="ggtt GMA: one graphics address; ppgtt ROOTS GMA: one address through a shadow PPGTT; stats: counters; "
        "display [connect|disconnect|edid FILE]: the monitor, hotplug; screen FILE.png: save the guest's screen",
    )
    i.add_argument(
        "args",
        nargs="*",
        help="ggtt: a graphics address; ppgtt: the PML4 address, or four PDP addresses comma-separated, "
        "then a graphics address; display: connect, disconnect or edid FILE; screen: the PNG file to write",
    )

    v = sub.add_parser("view", help="serve a web page that shows a running server's screen and counters")
    v.add_argument("--socket", required=True, metavar="PATH", help="the server's vfio-user socket (or --control)")
    v.add_argument("--control", metavar="PATH", help="the inspection socket, if not SOCKET.ctl")
    v.add_argument(
        "--listen",
        default="127.0.0.1:8086",
        metavar="HOST:PORT",
        help="where the page is served (default 127.0.0.1:8086; port 0 picks a free one)",
    )
    return p


def _view(args: argparse.Namespace) -> int:
    from .view import ViewServer

    host, sep, port = args.listen.rpartition(":")
    if not sep or not port.isdigit():
        print(f"devmodel view: --listen wants HOST:PORT, not {args.listen!r}", file=sys.stderr)
        return 2
    path = args.control or control_path(os.path.abspath(args.socket))
    try:
        httpd = ViewServer(path, host or "127.0.0.1", int(port))
    except OSError as exc:
        print(f"devmodel view: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # serve_forever unwinds, the socket closes
    print(f"devmodel view: {httpd.url} shows {path}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


def _drain(fd: int) -> None:
    """Empty the signal wake-up pipe (the handlers themselves run in Python's signal hook)."""
    os.read(fd, 512)


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # What a client or a guest can provoke must not fill the host's disk.
    logbound.install(logging.getLogger().handlers[0], args.log_burst, args.log_interval)
    try:
        plugin = load_plugin(args.device)
    except LookupError as exc:
        log.error("%s", exc)
        return 2
    if args.trace:
        # Before the device is built: it chooses its traced paths once.
        try:
            names = trace.configure(args.trace.split(","), args.trace_file, args.trace_burst, args.log_interval)
        except (ValueError, OSError) as exc:
            log.error("--trace: %s", exc)
            return 2
        log.info("tracing %s", ", ".join(names))
    bounds = {
        "max_device_pages": args.max_device_pages,
        "max_shadow_pages": args.max_shadow_pages,
        "max_shadow_mms": args.max_shadow_mms,
        "watchdog_seconds": args.watchdog,
    }
    try:
        device = plugin.create(
            platform=args.platform,
            display=args.display,
            edid=args.edid,
            **{k: v for k, v in bounds.items() if v is not None},
        )
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    device.dma.refuse_unsealed = args.refuse_unsealed_memory
    path: str | None = None
    try:
        if args.fd is not None:
            listener = socket.socket(fileno=args.fd)
            if listener.family != socket.AF_UNIX or listener.type != socket.SOCK_STREAM:
                log.error("--fd %d is not a UNIX stream socket", args.fd)
                return 2
        else:
            path = os.path.abspath(args.socket)
            listener = listen_unix(path)
    except (TransportError, OSError) as exc:
        log.error("cannot listen: %s", exc)
        return 1
    options = ServerOptions(write_multiple=args.write_multiple, max_dma_maps=args.max_dma_maps)
    try:
        server = Server(device, listener, options, accel=args.accel)
    except StaleAccelerator as exc:
        log.error("%s", exc)
        listener.close()
        if path:
            os.unlink(path)
        return 2
    ctl_path = args.control or (control_path(path) if path else None)
    control = None
    if ctl_path:
        try:
            control = ControlServer(server, ctl_path)
        except (TransportError, OSError) as exc:
            log.error("cannot open the inspection socket: %s", exc)
            listener.close()
            if path:
                os.unlink(path)
            return 1

    rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wfd)

    def stop(*_: object) -> None:
        # A stop in progress ignores further SIGTERM/SIGINT (``timeout`` sends one to the
        # child and one to its group). SIG_IGN, unlike a Python handler, outlives the
        # interpreter's shutdown, which puts Python handlers back to SIG_DFL: a second
        # signal arriving then would kill the process with status -15.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        server.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.add_reader(rfd, lambda: _drain(rfd))
    log.info(
        "serving %s (%s) on %s, %s",
        plugin.name,
        args.platform,
        path or f"fd {args.fd}",
        "with the compiled accelerator" if server.accel is not None else "on the Python path",
    )
    # The start-up objects (modules, the register table, the device) live as long as the
    # process: frozen, they leave every later full collection, which then costs 1.3 ms instead
    # of 18 ms and fits inside a step (docs/performance.md, "A directory's sync in steps").
    gc.freeze()
    try:
        server.serve_forever()
    finally:
        if control is not None:
            control.close()
        server.close()
        if path and os.path.exists(path):
            os.unlink(path)
        for line in device.describe():
            log.info("%s", line)
        log.info("stopped")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    import json

    path = args.control or control_path(os.path.abspath(args.socket))
    sent = list(args.args)
    out_png = None
    if args.what == "screen":
        if len(sent) != 1:
            print("devmodel inspect: screen takes the PNG file to write", file=sys.stderr)
            return 2
        out_png, sent = sent[0], []
    elif args.what == "display" and len(sent) == 2 and sent[0] == "edid" and "x" not in sent[1]:
        try:
            with open(sent[1], "rb") as f:
                sent[1] = f.read().hex()
        except OSError as exc:
            print(f"devmodel inspect: cannot read {sent[1]}: {exc}", file=sys.stderr)
            return 1
    try:
        answer = query(path, {"what": args.what, "args": sent}, timeout=30.0)
    except OSError as exc:
        print(f"devmodel inspect: cannot reach {path}: {exc}", file=sys.stderr)
        return 1
    except (ValueError, TypeError) as exc:
        print(f"devmodel inspect: bad answer from {path}: {exc}", file=sys.stderr)
        return 1
    if "error" in answer:
        print(f"devmodel inspect: {answer['error']}", file=sys.stderr)
        return 1
    if out_png is not None:
        import base64

        with open(out_png, "wb") as f:
            f.write(base64.b64decode(answer.pop("png_base64")))
        answer["file"] = out_png
    print(json.dumps(answer, indent=2))
    return 0


def _trace_list(args: argparse.Namespace) -> int:
    try:
        load_plugin(args.device)  # its modules declare its events
    except LookupError as exc:
        print(f"devmodel trace: {exc}", file=sys.stderr)
        return 2
    width = max(len(name) for name in trace.EVENTS)
    for name, ev in sorted(trace.EVENTS.items()):
        print(f"{name:<{width}}  {ev.doc}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "trace":
        return _trace_list(args)
    if args.command == "view":
        return _view(args)
    return _inspect(args)
