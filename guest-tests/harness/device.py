"""The device model (python -m devmodel serve) as a subprocess of the test."""
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .errors import HarnessError, tail_file
from .paths import repo_root, timeout_scale


class DeviceModel:
    """`python -m devmodel serve` on a fresh UNIX socket, its output in OUTDIR/device.log.

    Use as a context manager, or start()/stop(). The socket lives in a short temporary
    directory (UNIX socket paths are limited to 107 bytes)."""

    def __init__(self, outdir, device="gen_vgpu", platform=None, log_level="debug", extra_args=(), display="none"):
        self.outdir = Path(outdir)
        self.log_path = self.outdir / "device.log"
        self.device, self.platform, self.log_level = device, platform, log_level
        self.extra_args = list(extra_args)
        # Headless unless a test asks for the display: the GT lanes boot faster without
        # fbcon drawing through the trapped aperture.
        self.display = display
        self.proc = None
        self._sockdir = None
        self.socket = None

    def argv(self):
        argv = [sys.executable, "-m", "devmodel", "serve", "--socket", self.socket,
                "--device", self.device, "--log-level", self.log_level]
        if self.platform:
            argv += ["--platform", self.platform]
        if self.display and self.device == "gen_vgpu":
            argv += ["--display", self.display]
        return argv + self.extra_args

    def start(self, timeout=20.0):
        root = repo_root()
        self._sockdir = tempfile.mkdtemp(prefix="devmodel-")
        self.socket = os.path.join(self._sockdir, "vgpu.sock")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(root), str(root / "plugins")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["PYTHONUNBUFFERED"] = "1"
        self.outdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            log.write(("$ %s\n" % " ".join(self.argv())).encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env, cwd=str(root))
        deadline = time.monotonic() + timeout * timeout_scale()
        while True:
            if self.proc.poll() is not None:
                self._cleanup()
                raise HarnessError("the device model exited with status %s before it listened on its socket.\n"
                                   "--- device log (%s) ---\n%s"
                                   % (self.proc.returncode, self.log_path, self.log_tail()))
            try:
                if stat.S_ISSOCK(os.stat(self.socket).st_mode):
                    return self
            except FileNotFoundError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise HarnessError("the device model did not create %s within %.0f s.\n--- device log ---\n%s"
                                   % (self.socket, timeout, self.log_tail()))
            time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines=40):
        return tail_file(self.log_path, lines)

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def state(self, what="stats"):
        """The running server's answer about its device from the inspection socket (a dict),
        or a dict with "error" when it cannot be had (the loop is stuck, the server is gone)."""
        if self.socket is None:
            return {"error": "not started"}
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(5 * timeout_scale())
                s.connect(self.socket + ".ctl")
                s.sendall(json.dumps({"what": what, "args": []}).encode() + b"\n")
                buf = b""
                while not buf.endswith(b"\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
            return json.loads(buf)
        except (OSError, ValueError) as e:
            return {"error": "no answer from the inspection socket: %s" % e}

    def save_state(self):
        """Keep the device's state in OUTDIR/device-state.json (for a run that timed out);
        returns a short summary for the error message."""
        state = self.state()
        path = self.outdir / "device-state.json"
        path.write_text(json.dumps(state, indent=2) + "\n")
        if "error" in state:
            return "device state: %s" % state["error"]
        return "device state (%s):\n  %s" % (path, "\n  ".join(state.get("lines", [])))

    def died_message(self):
        status = self.proc.returncode if self.proc is not None else "never started"
        return ("the device model died (exit status %s).\n--- device log (%s) ---\n%s"
                % (status, self.log_path, self.log_tail()))

    def stop(self, timeout=5.0):
        """SIGTERM, then SIGKILL after timeout. Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._cleanup()
        return self.proc.returncode

    def _cleanup(self):
        if self._sockdir:
            shutil.rmtree(self._sockdir, ignore_errors=True)
            self._sockdir = None

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.stop()
