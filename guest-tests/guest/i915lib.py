"""Guest-side helpers for the i915 image: load the guest's own i915 driver and read what it did.

- the module closure in the order ci/setup-guest wrote to /lib/modules/load-order, loaded with
  busybox insmod under a deadline (a probe stuck in the kernel must not hang the script);
- the kernel log as records with their levels (/dev/kmsg), to check i915's messages;
- the driver binding and the DRM device nodes.
"""
import errno
import os
import subprocess
import time
from collections.abc import Callable, Sequence

MODULE_DIR = "/lib/modules"
LOAD_ORDER = MODULE_DIR + "/load-order"
I915_DRIVER = "/sys/bus/pci/drivers/i915"
DRI = "/dev/dri"
# Kernel log levels (include/linux/kern_levels.h): 0 emerg .. 4 warning .. 7 debug.
KERN_WARNING = 4
# A kernel log record: (level, seconds since boot, text).
Record = tuple[int, float, str]


def load_order() -> list[str]:
    """The module names of the image's closure, dependencies first."""
    with open(LOAD_ORDER) as f:
        return [line.strip() for line in f if line.strip()]


def module_loaded(name: str) -> bool:
    return os.path.isdir("/sys/module/" + name.replace("-", "_"))


def insmod(name: str, timeout: float, params: Sequence[str] = ()) -> tuple[bool, float, str]:
    """insmod NAME.ko; (ok, seconds, message). A module whose init (for i915: the whole PCI
    probe) is still running after timeout seconds is left running: killing insmod does not stop
    a task sleeping in the kernel, and waiting for it would hang the script."""
    start = time.monotonic()
    out = f"/tmp/insmod-{name}.log"
    with open(out, "w") as log:
        proc = subprocess.Popen(["insmod", f"{MODULE_DIR}/{name}.ko"] + list(params),
                                stdout=log, stderr=subprocess.STDOUT)
    while True:
        rc = proc.poll()
        elapsed = time.monotonic() - start
        if rc is not None:
            with open(out) as f:
                msg = f.read().strip()
            return rc == 0, elapsed, msg or f"exit status {rc}"
        if elapsed > timeout:
            return False, elapsed, f"still running after {timeout:.0f} s"
        time.sleep(0.05)


def kmsg() -> list[Record]:
    """Every record in the kernel's log buffer as (level, seconds, text) (/dev/kmsg; a record's
    continuation lines, " KEY=VALUE" device properties, are dropped)."""
    out: list[Record] = []
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    try:
        while True:
            try:
                rec = os.read(fd, 8192)
            except OSError as e:
                if e.errno == errno.EAGAIN:
                    break
                if e.errno == errno.EPIPE:  # overwritten while reading: go on with the next one
                    continue
                raise
            head, _, body = rec.decode(errors="replace").partition(";")
            fields = head.split(",")
            text = body.split("\n", 1)[0]
            out.append((int(fields[0]) & 7, int(fields[2]) / 1e6, text))
    finally:
        os.close(fd)
    return out


def kmsg_settle(quiet: float = 1.0, limit: float = 15.0) -> list[Record]:
    """Wait until the log has had no new record for `quiet` seconds (work i915 queued during the
    probe logs after insmod returns), at most `limit` seconds. Returns the records."""
    deadline = time.monotonic() + limit
    recs = kmsg()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = kmsg()
        if len(now) == len(recs):
            return now
        recs = now
    return recs


def format_record(rec: Record) -> str:
    level, secs, text = rec
    return f"<{level}>[{secs:12.6f}] {text}"


def bound_devices() -> list[str]:
    """PCI addresses bound to i915."""
    try:
        return sorted(n for n in os.listdir(I915_DRIVER) if n.count(":") == 2)
    except FileNotFoundError:
        return []


def dri_nodes() -> list[str]:
    try:
        return sorted(os.listdir(DRI))
    except FileNotFoundError:
        return []


def wait_for(pred: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True
