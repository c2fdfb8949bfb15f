"""UNIX stream sockets with fd passing (SCM_RIGHTS)."""

from __future__ import annotations

import array
import contextlib
import errno
import os
import socket
import stat

from ..errors import FramingError, TransportError

__all__ = ["recv_chunk", "recv_into", "send_message", "listen_unix", "close_fds", "RECV_SIZE", "MAX_RECV_FDS"]

RECV_SIZE = 1 << 17
# Room for every fd one sendmsg can carry (the kernel's SCM_MAX_FD), so the control message
# is never truncated: a message with more fds than max_msg_fds gets EINVAL and the connection
# goes on, instead of a truncation that can only drop it.
MAX_RECV_FDS = 253
_ANC_SIZE = socket.CMSG_SPACE(MAX_RECV_FDS * 4)
# Plain ints: the socket module's flags are IntFlags, whose | and & cost a microsecond a read.
_NONBLOCKING = int(socket.MSG_CMSG_CLOEXEC | socket.MSG_DONTWAIT)
_BLOCKING = int(socket.MSG_CMSG_CLOEXEC)
_CTRUNC = int(socket.MSG_CTRUNC)
_SOL_SOCKET = int(socket.SOL_SOCKET)
_SCM_RIGHTS = int(socket.SCM_RIGHTS)


def close_fds(fds: list[int] | tuple[int, ...]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def recv_chunk(sock: socket.socket, size: int = RECV_SIZE, block: bool = False) -> tuple[bytes, list[int]] | None:
    """One read: (data, fds); b"" data means EOF; None means nothing to read (non-blocking).
    A blocking read waits up to the socket's timeout."""
    try:
        data, ancdata, msg_flags, _ = sock.recvmsg(size, _ANC_SIZE, _BLOCKING if block else _NONBLOCKING)
    except TimeoutError as exc:
        raise TransportError("timed out waiting for the peer") from exc
    except (BlockingIOError, InterruptedError):
        return None
    except OSError as exc:
        if exc.errno in (errno.ECONNRESET, errno.EPIPE):
            return b"", []
        raise TransportError(f"recvmsg failed: {exc}") from exc
    return data, _fds_of(ancdata, msg_flags) if ancdata or msg_flags else []


def recv_into(sock: socket.socket, buf: memoryview) -> tuple[int, list[int]] | None:
    """One non-blocking read into ``buf`` (the server's receive buffer, allocated once):
    (bytes read, fds); 0 bytes means EOF; None means nothing to read."""
    try:
        n, ancdata, msg_flags, _ = sock.recvmsg_into((buf,), _ANC_SIZE, _NONBLOCKING)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError as exc:
        if exc.errno in (errno.ECONNRESET, errno.EPIPE):
            return 0, []
        raise TransportError(f"recvmsg failed: {exc}") from exc
    return n, _fds_of(ancdata, msg_flags) if ancdata or msg_flags else []


def _fds_of(ancdata: list[tuple[int, int, bytes]], msg_flags: int) -> list[int]:
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == _SOL_SOCKET and kind == _SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(payload[: len(payload) - len(payload) % arr.itemsize])
            fds.extend(arr)
    if msg_flags & _CTRUNC:
        close_fds(fds)
        raise FramingError("control message truncated: too many fds")
    return fds


def send_message(sock: socket.socket, data: bytes, fds: list[int] | tuple[int, ...] = ()) -> None:
    """Send one whole message; its fds ride on the first byte."""
    try:
        if fds:
            sent = sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
            if sent < len(data):
                sock.sendall(data[sent:])
        else:
            sock.sendall(data)
    except OSError as exc:
        raise TransportError(f"send failed: {exc}") from exc


_SUN_PATH_MAX = 108  # sizeof(sockaddr_un.sun_path), the NUL included


def listen_unix(path: str) -> socket.socket:
    """Listen on ``path`` with mode 0600. A stale socket file is replaced; one that a live
    server answers on is refused."""
    if os.path.lexists(path):
        st = os.lstat(path)
        if not stat.S_ISSOCK(st.st_mode):
            raise TransportError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # nobody listens: stale
        else:
            raise TransportError(f"another server is listening on {path}")
        finally:
            probe.close()
    # The path appears only once the socket listens (bound under a temporary name, then
    # renamed): a client that waits for the file, as QEMU's launchers and the tests do, never
    # sees ECONNREFUSED. A path too long for a suffix is bound directly.
    tmp = f"{path}.{os.getpid()}~"
    bind_at = tmp if len(os.fsencode(tmp)) < _SUN_PATH_MAX else path
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(bind_at)
    finally:
        os.umask(old_umask)
    try:
        os.chmod(bind_at, 0o600)
        sock.listen(4)
        if bind_at != path:
            os.rename(bind_at, path)
    except OSError:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(bind_at)
        raise
    return sock
