"""QEMU (TCG, q35) with the vfio-user-pci device, for guest boots and for qtest sessions."""
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .errors import HarnessError, tail, tail_file
from .paths import find_qemu, timeout_scale


def vfio_user_device(socket, dev_id="vgpu0", addr="03.0", **props):
    """The JSON form of -device vfio-user-pci (the only form that accepts `socket`). The ROM
    BAR is QEMU's default (on): a vGPU with a display serves its VBT there, a headless one
    sizes it as 0 (no ROM)."""
    dev = {"driver": "vfio-user-pci", "id": dev_id, "addr": addr,
           "socket": {"type": "unix", "path": str(socket)}}
    dev.update(props)
    return json.dumps(dev, separators=(",", ":"))


# Guest RAM unless a script asks for more (its memory=MIB option). The memory is a shared memfd
# QEMU and the device both map; a guest touches only what it uses, so a larger size costs the
# host only the pages the guest's working set reaches.
DEFAULT_MEMORY_MB = 512


class Qemu:
    """One QEMU process. Its serial console goes to OUTDIR/console.log, stderr to
    OUTDIR/qemu.log; with qmp=True a QMP socket is at self.qmp_path."""

    def __init__(self, outdir, socket=None, kernel=None, initrd=None, append="", memory_mb=DEFAULT_MEMORY_MB,
                 qmp=False, reboot=False, device_props=None, extra_args=(), qemu=None):
        self.outdir = Path(outdir)
        self.qemu = qemu or find_qemu()
        self.socket, self.kernel, self.initrd, self.append = socket, kernel, initrd, append
        self.memory_mb, self.reboot = memory_mb, reboot
        self.device_props = dict(device_props or {})
        self.extra_args = list(extra_args)
        self.console_path = self.outdir / "console.log"
        self.stderr_path = self.outdir / "qemu.log"
        # In a short temporary directory: UNIX socket paths are limited to 107 bytes.
        self._qmpdir = tempfile.mkdtemp(prefix="devmodel-qmp-") if qmp else None
        self.qmp_path = os.path.join(self._qmpdir, "qmp.sock") if self._qmpdir else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0  # time.monotonic() when QEMU was started

    def accel_args(self):
        return ["-accel", "tcg", "-serial", "file:%s" % self.console_path]

    def argv(self):
        m = self.memory_mb
        argv = [self.qemu, "-nodefaults", "-display", "none", "-machine", "q35,memory-backend=mem",
                "-m", "%dM" % m, "-object", "memory-backend-memfd,id=mem,size=%dM,share=on" % m]
        argv += self.accel_args()
        if not self.reboot:
            argv.append("-no-reboot")
        if self.kernel:
            argv += ["-kernel", str(self.kernel), "-initrd", str(self.initrd), "-append", self.append]
        if self.qmp_path:
            argv += ["-qmp", "unix:%s,server=on,wait=off" % self.qmp_path]
        if self.socket:
            argv += ["-device", vfio_user_device(self.socket, **self.device_props)]
        return argv + self.extra_args

    def _popen(self, **kw) -> subprocess.Popen[bytes]:
        self.outdir.mkdir(parents=True, exist_ok=True)
        argv = self.argv()
        with open(self.stderr_path, "wb") as err:
            err.write(("$ %s\n" % " ".join(argv)).encode())
            err.flush()
            self.proc = subprocess.Popen(argv, stderr=err, **kw)
        self.started = time.monotonic()
        return self.proc

    @property
    def process(self) -> subprocess.Popen[bytes]:
        if self.proc is None:
            raise HarnessError("QEMU was not started")
        return self.proc

    def start(self):
        self._popen(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        return self

    def poll(self):
        return self.process.poll()

    def wait(self, timeout):
        """The exit status, or None if QEMU still runs after timeout seconds."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self._qmpdir:
            shutil.rmtree(self._qmpdir, ignore_errors=True)
            self._qmpdir = None

    def wait_qmp_socket(self, timeout=10.0):
        if self.qmp_path is None:
            raise HarnessError("QEMU was started without qmp=True")
        deadline = time.monotonic() + timeout * timeout_scale()
        while not os.path.exists(self.qmp_path):
            if self.process.poll() is not None:
                raise HarnessError(self.exit_message())
            if time.monotonic() > deadline:
                raise HarnessError("QEMU created no QMP socket within %.0f s" % timeout)
            time.sleep(0.02)
        return self.qmp_path

    def save_cpu_state(self, commands=("info status", "info registers -a", "x/8i $pc")):
        """Before a hung QEMU is killed: HMP's answers to ``commands`` (where each vCPU is and
        what it runs), through the QMP socket, into OUTDIR/qemu-state.txt. Returns a line that
        says where they went, or why there are none."""
        if self.qmp_path is None or self.proc is None or self.proc.poll() is not None:
            return "QEMU state: no QMP socket or QEMU gone"
        from qemu.qmp import QMPError  # QEMU's own client, in the venv
        from qemu.qmp.legacy import QEMUMonitorProtocol

        out = self.outdir / "qemu-state.txt"
        mon = QEMUMonitorProtocol(self.qmp_path)
        try:
            mon.connect()
            mon.settimeout(10 * timeout_scale())
            parts = []
            for line in commands:
                reply = mon.cmd("human-monitor-command", **{"command-line": line})
                if isinstance(reply, dict):  # older clients hand back the whole response
                    reply = reply.get("return", reply)
                parts.append("(qemu) %s\n%s" % (line, reply))
            out.write_text("\n".join(parts))
        except (OSError, QMPError) as exc:  # a QEMU that hangs may not answer: say so, kill it anyway
            return "QEMU state: QMP did not answer (%s: %s)" % (type(exc).__name__, exc)
        finally:
            mon.close()
        return "QEMU state (each vCPU's registers): %s" % out

    def console_text(self):
        try:
            return self.console_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def console_tail(self, lines=40):
        return tail(self.console_text(), lines)

    def stderr_tail(self, lines=20):
        return tail_file(self.stderr_path, lines)

    def exit_message(self):
        return ("QEMU exited with status %s.\n--- QEMU stderr (%s) ---\n%s"
                % (self.process.returncode, self.stderr_path, self.stderr_tail()))

    def __enter__(self):
        return self if self.proc else self.start()

    def __exit__(self, *exc):
        self.kill()


class Qtest(Qemu):
    """QEMU under the qtest accelerator: no CPU runs; the test plays the CPU through the qtest
    protocol on stdin/stdout (port I/O, memory reads and writes)."""

    def __init__(self, outdir, socket, reply_timeout=15.0, **kw):
        super().__init__(outdir, socket=socket, **kw)
        self.reply_timeout = reply_timeout
        self._buf = b""

    def accel_args(self):
        return ["-accel", "qtest", "-qtest", "stdio", "-qtest-log", str(self.outdir / "qtest.log")]

    def start(self):
        proc = self._popen(stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        assert proc.stdin is not None and proc.stdout is not None  # both are pipes
        self._to_qemu, self._from_qemu = proc.stdin, proc.stdout
        return self

    def _readline(self, deadline):
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HarnessError("no qtest reply within %.0f s.\n--- QEMU stderr ---\n%s"
                                   % (self.reply_timeout, self.stderr_tail()))
            r, _, _ = select.select([self._from_qemu], [], [], min(left, 0.2))
            if r:
                chunk = os.read(self._from_qemu.fileno(), 65536)
                if not chunk:
                    self.process.wait(5)
                    raise HarnessError(self.exit_message())
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def cmd(self, line):
        """Send one qtest command; return the words after OK. FAIL raises HarnessError."""
        if self.process.poll() is not None:
            raise HarnessError(self.exit_message())
        try:
            self._to_qemu.write(line.encode() + b"\n")
        except BrokenPipeError:
            self.process.wait(5)
            raise HarnessError(self.exit_message()) from None
        deadline = time.monotonic() + self.reply_timeout * timeout_scale()
        while True:
            reply = self._readline(deadline)
            if reply.startswith("IRQ"):
                continue
            if reply.startswith("OK"):
                return reply[2:].strip()
            raise HarnessError("qtest %r failed: %s" % (line, reply))

    def _int(self, line):
        return int(self.cmd(line), 16)

    # CPU side: ports and memory.
    def outb(self, port, v): self.cmd("outb 0x%x 0x%x" % (port, v))
    def outw(self, port, v): self.cmd("outw 0x%x 0x%x" % (port, v))
    def outl(self, port, v): self.cmd("outl 0x%x 0x%x" % (port, v))
    def inb(self, port): return self._int("inb 0x%x" % port)
    def inw(self, port): return self._int("inw 0x%x" % port)
    def inl(self, port): return self._int("inl 0x%x" % port)
    def writeb(self, addr, v): self.cmd("writeb 0x%x 0x%x" % (addr, v))
    def writew(self, addr, v): self.cmd("writew 0x%x 0x%x" % (addr, v))
    def writel(self, addr, v): self.cmd("writel 0x%x 0x%x" % (addr, v))
    def writeq(self, addr, v): self.cmd("writeq 0x%x 0x%x" % (addr, v))
    def readb(self, addr): return self._int("readb 0x%x" % addr)
    def readw(self, addr): return self._int("readw 0x%x" % addr)
    def readl(self, addr): return self._int("readl 0x%x" % addr)
    def readq(self, addr): return self._int("readq 0x%x" % addr)

    # PCI configuration mechanism #1 (0xcf8/0xcfc), bus 0.
    @staticmethod
    def _cfg_addr(devfn, off):
        dev, fn = devfn
        return 0x80000000 | dev << 11 | fn << 8 | (off & 0xFC)

    def cfg_read(self, devfn, off, size=4):
        self.outl(0xCF8, self._cfg_addr(devfn, off))
        port = 0xCFC + (off & 3)
        return {1: self.inb, 2: self.inw, 4: self.inl}[size](port)

    def cfg_write(self, devfn, off, val, size=4):
        self.outl(0xCF8, self._cfg_addr(devfn, off))
        port = 0xCFC + (off & 3)
        {1: self.outb, 2: self.outw, 4: self.outl}[size](port, val)
