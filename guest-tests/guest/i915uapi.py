"""i915's user-space interface on a DRM node, as Python standard library calls (fcntl.ioctl on
packed structs; ctypes only for the addresses of the buffers a struct points at).

Numbers and layouts are those of Linux 6.1's include/uapi/drm/i915_drm.h and drm.h (x86-64):
an ioctl number is (dir << 30) | (size << 16) | ('d' << 8) | nr, with i915's own nr counted from
DRM_COMMAND_BASE 0x40.
"""
import ctypes
import errno
import fcntl
import mmap
import os
import struct

_IOC_WRITE, _IOC_READ = 1, 2
DRM_BASE = ord("d")
DRM_COMMAND_BASE = 0x40


def _ioc(direction, nr, size):
    return (direction << 30) | (size << 16) | (DRM_BASE << 8) | nr


def _iow(nr, size):
    return _ioc(_IOC_WRITE, nr, size)


def _iowr(nr, size):
    return _ioc(_IOC_READ | _IOC_WRITE, nr, size)


# Struct layouts (struct module formats, native x86-64 alignment spelled out with x padding).
GEM_CLOSE = "II"                      # drm_gem_close: handle, pad
GETPARAM = "i4xQ"                     # drm_i915_getparam: param, (pad), int *value
GEM_CREATE = "QII"                    # size, handle, pad
GEM_PREAD = GEM_PWRITE = "IIQQQ"      # handle, pad, offset, size, data_ptr
GEM_WAIT = "IIq"                      # bo_handle, flags, timeout_ns
CONTEXT_CREATE = "II"                 # ctx_id, pad
CONTEXT_DESTROY = "II"                # ctx_id, pad
RESET_STATS = "IIIIII"                # ctx_id, flags, reset_count, batch_active, batch_pending, pad
EXEC_OBJECT2 = "IIQQQQQQ"             # handle, relocation_count, relocs_ptr, alignment, offset, flags, rsvd1, rsvd2
EXECBUFFER2 = "QIIIIIIQQQQ"           # buffers_ptr, buffer_count, batch_start_offset, batch_len, DR1, DR4,
                                      # num_cliprects, cliprects_ptr, flags, rsvd1 (context id), rsvd2
QUERY = "IIQ"                         # drm_i915_query: num_items, flags, items_ptr
QUERY_ITEM = "QiIQ"                   # query_id, length (in: 0 asks for it; out: < 0 is an errno), flags, data_ptr
QUERY_ENGINE_INFO_HEAD = "I12x"       # drm_i915_query_engine_info: num_engines, rsvd[3]
ENGINE_INFO = "HH4xQQ8x24x"           # drm_i915_engine_info: class, instance, rsvd0, flags, capabilities,
                                      # logical_instance + rsvd1[3], rsvd2[3]

DRM_IOCTL_GEM_CLOSE = _iow(0x09, struct.calcsize(GEM_CLOSE))
DRM_IOCTL_I915_GETPARAM = _iowr(DRM_COMMAND_BASE + 0x06, struct.calcsize(GETPARAM))
DRM_IOCTL_I915_GEM_CREATE = _iowr(DRM_COMMAND_BASE + 0x1B, struct.calcsize(GEM_CREATE))
DRM_IOCTL_I915_GEM_PREAD = _iow(DRM_COMMAND_BASE + 0x1C, struct.calcsize(GEM_PREAD))
DRM_IOCTL_I915_GEM_PWRITE = _iow(DRM_COMMAND_BASE + 0x1D, struct.calcsize(GEM_PWRITE))
DRM_IOCTL_I915_GEM_EXECBUFFER2 = _iow(DRM_COMMAND_BASE + 0x29, struct.calcsize(EXECBUFFER2))
# The same ioctl read back (rsvd2 carries the out-fence): i915's EXECBUFFER2_WR.
DRM_IOCTL_I915_GEM_EXECBUFFER2_WR = _iowr(DRM_COMMAND_BASE + 0x29, struct.calcsize(EXECBUFFER2))
DRM_IOCTL_I915_GEM_WAIT = _iowr(DRM_COMMAND_BASE + 0x2C, struct.calcsize(GEM_WAIT))
DRM_IOCTL_I915_GEM_CONTEXT_CREATE = _iowr(DRM_COMMAND_BASE + 0x2D, struct.calcsize(CONTEXT_CREATE))
DRM_IOCTL_I915_GEM_CONTEXT_DESTROY = _iow(DRM_COMMAND_BASE + 0x2E, struct.calcsize(CONTEXT_DESTROY))
DRM_IOCTL_I915_GET_RESET_STATS = _iowr(DRM_COMMAND_BASE + 0x32, struct.calcsize(RESET_STATS))
DRM_IOCTL_I915_QUERY = _iowr(DRM_COMMAND_BASE + 0x39, struct.calcsize(QUERY))
GEM_BUSY = "II"                       # handle, busy (out: bits 31:16 engines reading, 15:0 the writer)
GEM_SET_DOMAIN = "III"                # handle, read_domains, write_domain
GEM_MMAP_OFFSET = "IIQQQ"             # handle, pad, offset (out: the fake offset to mmap), flags, extensions
GEM_SET_TILING = "IIII"               # handle, tiling_mode, stride, swizzle_mode (out)
DRM_IOCTL_I915_GEM_BUSY = _iowr(DRM_COMMAND_BASE + 0x17, struct.calcsize(GEM_BUSY))
DRM_IOCTL_I915_GEM_SET_DOMAIN = _iow(DRM_COMMAND_BASE + 0x1F, struct.calcsize(GEM_SET_DOMAIN))
DRM_IOCTL_I915_GEM_MMAP_OFFSET = _iowr(DRM_COMMAND_BASE + 0x24, struct.calcsize(GEM_MMAP_OFFSET))
DRM_IOCTL_I915_GEM_SET_TILING = _iowr(DRM_COMMAND_BASE + 0x21, struct.calcsize(GEM_SET_TILING))
TILING_NONE, TILING_X, TILING_Y = 0, 1, 2
# mmap_offset flags: through the aperture (GGTT, BAR2) or a CPU mapping of the pages.
MMAP_OFFSET_GTT, MMAP_OFFSET_WC, MMAP_OFFSET_WB = 0, 1, 2
DOMAIN_CPU, DOMAIN_GTT = 0x1, 0x40
EXEC_FENCE_OUT = 1 << 17               # rsvd2's upper half returns a sync_file fd

# getparam parameters.
PARAM_CHIPSET_ID = 4
PARAM_HAS_BSD = 10
PARAM_HAS_BLT = 11
PARAM_HAS_ALIASING_PPGTT = 18         # the PPGTT type: 2 = full (per-file address spaces)
PARAM_HAS_VEBOX = 22
PARAM_CMD_PARSER_VERSION = 28
PARAM_HAS_GPU_RESET = 35
PARAM_HAS_EXEC_SOFTPIN = 37
PPGTT_FULL = 2

# DRM_IOCTL_I915_QUERY items, and the engine classes of the engine info query
# (I915_ENGINE_CLASS_*), by the names the tests use.
QUERY_ENGINE_INFO = 2
ENGINE_CLASS_NAMES = {0: "rcs", 1: "bcs", 2: "vcs", 3: "vecs"}

# execbuffer2 flags: the engine selector (bits 5:0) and the behaviour bits used here.
EXEC_RENDER, EXEC_BSD, EXEC_BLT, EXEC_VEBOX = 1, 2, 3, 4
EXEC_NO_RELOC = 1 << 11
# exec_object2 flags.
OBJECT_WRITE = 1 << 2
OBJECT_SUPPORTS_48B_ADDRESS = 1 << 3
OBJECT_PINNED = 1 << 4

# (name, execbuffer2 engine selector, getparam saying the engine exists or None: always there).
ENGINES = (
    ("rcs", EXEC_RENDER, None),
    ("bcs", EXEC_BLT, PARAM_HAS_BLT),
    ("vcs", EXEC_BSD, PARAM_HAS_BSD),
    ("vecs", EXEC_VEBOX, PARAM_HAS_VEBOX),
)

RENDER_NODE = "/dev/dri/renderD128"


class ExecObject:
    """One exec_object2: a buffer object softpinned at a PPGTT address (EXEC_OBJECT_PINNED; the
    address may lie above 4 GiB, which needs the 48-bit flag)."""

    def __init__(self, handle, address, write=False):
        self.handle, self.address, self.write = handle, address, write

    def pack(self):
        flags = OBJECT_PINNED | OBJECT_SUPPORTS_48B_ADDRESS | (OBJECT_WRITE if self.write else 0)
        return struct.pack(EXEC_OBJECT2, self.handle, 0, 0, 0, self.address, flags, 0, 0)


class Drm:
    """An open DRM node and the i915 ioctls the tests use. Errors are OSError with the errno."""

    def __init__(self, path=RENDER_NODE):
        self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def ioctl(self, request, fmt, *fields):
        """Run one ioctl on a struct packed from fields; returns the struct as the kernel left it.
        EINTR and EAGAIN are retried, as libdrm's drmIoctl does."""
        buf = bytearray(struct.pack(fmt, *fields))
        while True:
            try:
                fcntl.ioctl(self.fd, request, buf, True)
                return struct.unpack(fmt, buf)
            except OSError as e:
                if e.errno not in (errno.EINTR, errno.EAGAIN):
                    raise

    def getparam(self, param):
        value = ctypes.c_int(0)
        self.ioctl(DRM_IOCTL_I915_GETPARAM, GETPARAM, param, ctypes.addressof(value))
        return value.value

    def has_param(self, param):
        """getparam as a truth value; a parameter the kernel does not know reads as absent."""
        try:
            return self.getparam(param) > 0
        except OSError as e:
            if e.errno == errno.EINVAL:
                return False
            raise

    def create(self, size):
        return self.ioctl(DRM_IOCTL_I915_GEM_CREATE, GEM_CREATE, size, 0, 0)[1]

    def gem_close(self, handle):
        self.ioctl(DRM_IOCTL_GEM_CLOSE, GEM_CLOSE, handle, 0)

    def pwrite(self, handle, offset, data):
        data = bytes(data)
        buf = ctypes.create_string_buffer(data, len(data))
        self.ioctl(DRM_IOCTL_I915_GEM_PWRITE, GEM_PWRITE, handle, 0, offset, len(data), ctypes.addressof(buf))

    def pread(self, handle, offset, size):
        buf = ctypes.create_string_buffer(size)
        self.ioctl(DRM_IOCTL_I915_GEM_PREAD, GEM_PREAD, handle, 0, offset, size, ctypes.addressof(buf))
        return buf.raw

    def execbuf(self, objects, engine, batch_len, batch_start=0, context=0, fence_out=False):
        """Submit the batch in the LAST of objects (i915's default order) on engine (an EXEC_*
        selector) in context (0: the file's default context). With fence_out, the sync_file fd
        of the request (the caller closes it); else None."""
        table = b"".join(o.pack() for o in objects)
        buf = ctypes.create_string_buffer(table, len(table))
        flags = engine | EXEC_NO_RELOC | (EXEC_FENCE_OUT if fence_out else 0)
        request = DRM_IOCTL_I915_GEM_EXECBUFFER2_WR if fence_out else DRM_IOCTL_I915_GEM_EXECBUFFER2
        out = self.ioctl(request, EXECBUFFER2, ctypes.addressof(buf), len(objects),
                         batch_start, batch_len, 0, 0, 0, 0, flags, context, 0)
        return out[-1] >> 32 if fence_out else None

    def busy(self, handle):
        """The busy ioctl's word: 0 when idle, else the engine classes using it (+1), the
        writer's in bits 15:0."""
        return self.ioctl(DRM_IOCTL_I915_GEM_BUSY, GEM_BUSY, handle, 0)[1]

    def set_domain(self, handle, read_domains, write_domain=0):
        self.ioctl(DRM_IOCTL_I915_GEM_SET_DOMAIN, GEM_SET_DOMAIN, handle, read_domains, write_domain)

    def set_tiling(self, handle, mode, stride):
        """The object's tiling (TILING_*) and stride; returns the swizzle mode i915 reports."""
        return self.ioctl(DRM_IOCTL_I915_GEM_SET_TILING, GEM_SET_TILING, handle, mode, stride, 0)[3]

    def mmap(self, handle, size, kind):
        """An mmap.mmap of the object: kind MMAP_OFFSET_GTT (through the aperture) or a CPU
        mapping (MMAP_OFFSET_WB, MMAP_OFFSET_WC)."""
        offset = self.ioctl(DRM_IOCTL_I915_GEM_MMAP_OFFSET, GEM_MMAP_OFFSET, handle, 0, 0, kind, 0)[2]
        return mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=offset)

    def wait(self, handle, timeout_s):
        """Wait until the GPU is done with handle. False when timeout_s passed first (ETIME)."""
        try:
            self.ioctl(DRM_IOCTL_I915_GEM_WAIT, GEM_WAIT, handle, 0, int(timeout_s * 1e9))
        except OSError as e:
            if e.errno == errno.ETIME:
                return False
            raise
        return True

    def context_create(self):
        return self.ioctl(DRM_IOCTL_I915_GEM_CONTEXT_CREATE, CONTEXT_CREATE, 0, 0)[0]

    def context_destroy(self, ctx):
        self.ioctl(DRM_IOCTL_I915_GEM_CONTEXT_DESTROY, CONTEXT_DESTROY, ctx, 0)

    def reset_stats(self, ctx):
        """(reset_count, batch_active, batch_pending) of a context: batch_active counts the
        hangs i915 found this context guilty of. reset_count is only reported to
        CAP_SYS_ADMIN, which the tests have."""
        _ctx, _flags, count, active, pending, _pad = self.ioctl(
            DRM_IOCTL_I915_GET_RESET_STATS, RESET_STATS, ctx, 0, 0, 0, 0, 0)
        return count, active, pending

    def query(self, query_id):
        """The bytes of one DRM_IOCTL_I915_QUERY item: asked once for its length, then read."""
        def run(length, address):
            item = ctypes.create_string_buffer(struct.pack(QUERY_ITEM, query_id, length, 0, address))
            self.ioctl(DRM_IOCTL_I915_QUERY, QUERY, 1, 0, ctypes.addressof(item))
            got = struct.unpack(QUERY_ITEM, item.raw[:struct.calcsize(QUERY_ITEM)])[1]
            if got < 0:
                raise OSError(-got, "i915 query %d: %s" % (query_id, os.strerror(-got)))
            return got
        length = run(0, 0)
        data = ctypes.create_string_buffer(length)
        run(length, ctypes.addressof(data))
        return data.raw

    def engines(self):
        """[(class name, instance)] of the engines i915 reports to user space (the engine info
        query: what i915 registered as user-visible engines after its probe)."""
        raw = self.query(QUERY_ENGINE_INFO)
        (count,) = struct.unpack_from(QUERY_ENGINE_INFO_HEAD, raw)
        head, size = struct.calcsize(QUERY_ENGINE_INFO_HEAD), struct.calcsize(ENGINE_INFO)
        if len(raw) != head + count * size:
            raise OSError(0, "engine info: %d bytes for %d engines" % (len(raw), count))
        out = []
        for i in range(count):
            cls, instance, _flags, _caps = struct.unpack_from(ENGINE_INFO, raw, head + i * size)
            out.append((ENGINE_CLASS_NAMES.get(cls, "class%d" % cls), instance))
        return out
