"""DRM's KMS interface on /dev/dri/card0, as Python standard library calls (fcntl.ioctl on packed
structs; ctypes only for the addresses of the arrays a struct points at).

Numbers and layouts are those of Linux 6.1's include/uapi/drm/drm.h, drm_mode.h and
drm_fourcc.h (x86-64). IGT's KMS library does the same through libdrm; this is what its basic
tests need, written from the kernel's headers.
"""
import ctypes
import errno
import fcntl
import mmap
import os
import select
import struct

CARD = "/dev/dri/card0"
_IOC_WRITE, _IOC_READ = 1, 2


def _ioc(direction, nr, size):
    return (direction << 30) | (size << 16) | (ord("d") << 8) | nr


def _iowr(nr, fmt):
    return _ioc(_IOC_READ | _IOC_WRITE, nr, struct.calcsize(fmt))


def fourcc(code):
    return struct.unpack("<I", code.encode())[0]


XRGB8888, XBGR8888, ARGB8888 = fourcc("XR24"), fourcc("XB24"), fourcc("AR24")
RGB565, XRGB2101010 = fourcc("RG16"), fourcc("XR30")
FORMATS = {"XRGB8888": XRGB8888, "XBGR8888": XBGR8888, "RGB565": RGB565, "XRGB2101010": XRGB2101010,
           "ARGB8888": ARGB8888}
MOD_LINEAR, MOD_X, MOD_Y, MOD_YF = 0, 1 << 56 | 1, 1 << 56 | 2, 1 << 56 | 3
MODIFIERS = {"linear": MOD_LINEAR, "X": MOD_X, "Y": MOD_Y, "Yf": MOD_YF}

MODEINFO = "IHHHHHHHHHHIII32s"            # drm_mode_modeinfo (68 bytes)
CARD_RES = "QQQQIIIIIIII"                  # drm_mode_card_res
CRTC = "QIIIIIII" + "IHHHHHHHHHHIII32s"     # drm_mode_crtc: set_connectors_ptr, count, crtc, fb, x, y,
                                           # gamma_size, mode_valid, mode
GET_CONNECTOR = "QQQQ" + "I" * 12          # encoders, modes, props, prop_values ptrs; 3 counts; encoder,
                                           # connector id, type, type_id, connection, mm_w, mm_h, subpixel, pad
FB_CMD2 = "IIIII4I4I4I4x4Q"                # fb_id, w, h, format, flags, handles, pitches, offsets, pad, modifiers
PAGE_FLIP = "IIIIQ"                        # crtc_id, fb_id, flags, reserved, user_data
CREATE_DUMB = "IIIIIIQ"                    # height, width, bpp, flags, handle, pitch, size
MAP_DUMB = "IIQ"                           # handle, pad, offset
DESTROY_DUMB = "I"
CURSOR = "IIiiIII"                         # flags, crtc_id, x, y, width, height, handle
OBJ_GETPROPS = "QQIII4x"                   # props_ptr, values_ptr, count, obj_id, obj_type
GET_PROPERTY = "QQII32sI4x"                # values_ptr, enum_blob_ptr, prop_id, flags, name, count_values
GET_BLOB = "IIQ"                           # blob_id, length, data
CREATE_BLOB = "QII"                        # data, length, blob_id
DESTROY_BLOB = "I"
WAIT_VBLANK = "IIqq"                       # request: type, sequence, signal / reply: type, seq, sec, usec
RMFB = "I"

IOCTL_SET_MASTER = _ioc(0, 0x1E, 0)
IOCTL_WAIT_VBLANK = _iowr(0x3A, WAIT_VBLANK)
IOCTL_GETRESOURCES = _iowr(0xA0, CARD_RES)
IOCTL_GETCRTC = _iowr(0xA1, CRTC)
IOCTL_SETCRTC = _iowr(0xA2, CRTC)
IOCTL_CURSOR = _iowr(0xA3, CURSOR)
IOCTL_GETCONNECTOR = _iowr(0xA7, GET_CONNECTOR)
IOCTL_GETPROPERTY = _iowr(0xAA, GET_PROPERTY)
IOCTL_GETPROPBLOB = _iowr(0xAC, GET_BLOB)
IOCTL_RMFB = _iowr(0xAF, RMFB)
IOCTL_PAGE_FLIP = _iowr(0xB0, PAGE_FLIP)
IOCTL_CREATE_DUMB = _iowr(0xB2, CREATE_DUMB)
IOCTL_MAP_DUMB = _iowr(0xB3, MAP_DUMB)
IOCTL_DESTROY_DUMB = _iowr(0xB4, DESTROY_DUMB)
IOCTL_ADDFB2 = _iowr(0xB8, FB_CMD2)
IOCTL_OBJ_GETPROPERTIES = _iowr(0xB9, OBJ_GETPROPS)
IOCTL_CREATEPROPBLOB = _iowr(0xBD, CREATE_BLOB)
IOCTL_DESTROYPROPBLOB = _iowr(0xBE, DESTROY_BLOB)

OBJECT_CONNECTOR = 0xC0C0C0C0
CONNECTED = 1
CONNECTOR_DISPLAYPORT = 10
FB_MODIFIERS = 1 << 1
PAGE_FLIP_EVENT = 0x01
CURSOR_BO, CURSOR_MOVE = 0x01, 0x02
VBLANK_RELATIVE = 0x1
EVENT_VBLANK, EVENT_FLIP_COMPLETE = 0x01, 0x02
EVENT_VBLANK_FMT = "IIQIIII"               # drm_event (type, length), user_data, tv_sec, tv_usec, sequence, crtc_id


def _buf(n):
    b = ctypes.create_string_buffer(max(n, 1))
    return b, ctypes.addressof(b)


class Mode:
    """A drm_mode_modeinfo, its packed bytes kept as the kernel gave them."""

    def __init__(self, raw):
        self.raw = raw
        f = struct.unpack(MODEINFO, raw)
        self.clock, self.hdisplay, self.htotal = f[0], f[1], f[4]
        self.vdisplay, self.vtotal, self.vrefresh = f[6], f[9], f[11]
        self.name = f[14].rstrip(b"\0").decode()

    @property
    def refresh(self):
        """Frames per second from the timings (vrefresh is rounded)."""
        return self.clock * 1000.0 / (self.htotal * self.vtotal)


class Card:
    def __init__(self, path=CARD):
        self.fd = os.open(path, os.O_RDWR)

    def close(self):
        os.close(self.fd)

    def ioctl(self, request, fmt, *values):
        return struct.unpack(fmt, fcntl.ioctl(self.fd, request, struct.pack(fmt, *values)))

    def set_master(self):
        fcntl.ioctl(self.fd, IOCTL_SET_MASTER, 0)

    def resources(self):
        """(crtc ids, connector ids, encoder ids)."""
        f = self.ioctl(IOCTL_GETRESOURCES, CARD_RES, *[0] * 12)
        counts = f[4:8]
        bufs = [_buf(4 * c) for c in counts]
        f = self.ioctl(IOCTL_GETRESOURCES, CARD_RES, *[a for _b, a in bufs], *counts, 0, 0, 0, 0)
        ids = [list(struct.unpack("%dI" % c, b.raw[: 4 * c])) for (b, _a), c in zip(bufs, f[4:8], strict=True)]
        return ids[1], ids[2], ids[3]

    def connector(self, conn_id):
        """(connection, type, encoder id, [Mode])."""
        f = self.ioctl(IOCTL_GETCONNECTOR, GET_CONNECTOR, 0, 0, 0, 0, 0, 0, 0, 0, conn_id, *[0] * 7)
        n_modes = f[4]
        modes, maddr = _buf(68 * n_modes)
        f = self.ioctl(IOCTL_GETCONNECTOR, GET_CONNECTOR, 0, maddr, 0, 0, n_modes, 0, 0, 0, conn_id, *[0] * 7)
        got = min(f[4], n_modes)
        return f[11], f[9], f[7], [Mode(modes.raw[68 * i: 68 * i + 68]) for i in range(got)]

    def properties(self, obj_id, obj_type):
        """{name: (prop_id, value)} of a mode object."""
        f = self.ioctl(IOCTL_OBJ_GETPROPERTIES, OBJ_GETPROPS, 0, 0, 0, obj_id, obj_type)
        n = f[2]
        ids, ia = _buf(4 * n)
        vals, va = _buf(8 * n)
        self.ioctl(IOCTL_OBJ_GETPROPERTIES, OBJ_GETPROPS, ia, va, n, obj_id, obj_type)
        out = {}
        for pid, val in zip(struct.unpack("%dI" % n, ids.raw[: 4 * n]), struct.unpack("%dQ" % n, vals.raw[: 8 * n]),
                            strict=True):
            p = self.ioctl(IOCTL_GETPROPERTY, GET_PROPERTY, 0, 0, pid, 0, b"", 0)
            out[p[4].rstrip(b"\0").decode()] = (pid, val)
        return out

    def blob(self, blob_id):
        f = self.ioctl(IOCTL_GETPROPBLOB, GET_BLOB, blob_id, 0, 0)
        data, addr = _buf(f[1])
        f = self.ioctl(IOCTL_GETPROPBLOB, GET_BLOB, blob_id, f[1], addr)
        return data.raw[: f[1]]

    def create_blob(self, data):
        _keep, addr = _buf(len(data))  # alive until the ioctl returns
        ctypes.memmove(addr, data, len(data))
        return self.ioctl(IOCTL_CREATEPROPBLOB, CREATE_BLOB, addr, len(data), 0)[2]

    def destroy_blob(self, blob_id):
        self.ioctl(IOCTL_DESTROYPROPBLOB, DESTROY_BLOB, blob_id)

    def create_dumb(self, width, height, bpp=32):
        """(handle, pitch, size)."""
        f = self.ioctl(IOCTL_CREATE_DUMB, CREATE_DUMB, height, width, bpp, 0, 0, 0, 0)
        return f[4], f[5], f[6]

    def map_dumb(self, handle, size):
        offset = self.ioctl(IOCTL_MAP_DUMB, MAP_DUMB, handle, 0, 0)[2]
        return mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=offset)

    def destroy_dumb(self, handle):
        self.ioctl(IOCTL_DESTROY_DUMB, DESTROY_DUMB, handle)

    def add_fb2(self, width, height, fmt, handle, pitch, modifier=None):
        flags = FB_MODIFIERS if modifier is not None else 0
        mods = (modifier or 0, 0, 0, 0)
        f = self.ioctl(IOCTL_ADDFB2, FB_CMD2, 0, width, height, fmt, flags, handle, 0, 0, 0, pitch, 0, 0, 0,
                       0, 0, 0, 0, *mods)
        return f[0]

    def rm_fb(self, fb_id):
        self.ioctl(IOCTL_RMFB, RMFB, fb_id)

    def set_crtc(self, crtc_id, fb_id, conn_ids, mode):
        _ids, addr = _buf(4 * len(conn_ids))  # alive until the ioctl returns
        ctypes.memmove(addr, struct.pack("%dI" % len(conn_ids), *conn_ids), 4 * len(conn_ids))
        fields = struct.unpack(MODEINFO, mode.raw) if mode else (0,) * 14 + (b"",)
        self.ioctl(IOCTL_SETCRTC, CRTC, addr, len(conn_ids), crtc_id, fb_id, 0, 0, 0, 1 if mode else 0, *fields)

    def get_crtc(self, crtc_id):
        """(fb_id, mode_valid, Mode)."""
        f = self.ioctl(IOCTL_GETCRTC, CRTC, 0, 0, crtc_id, 0, 0, 0, 0, 0, *(0,) * 14, b"")
        return f[3], f[7], Mode(struct.pack(MODEINFO, *f[8:]))

    def page_flip(self, crtc_id, fb_id, user_data):
        self.ioctl(IOCTL_PAGE_FLIP, PAGE_FLIP, crtc_id, fb_id, PAGE_FLIP_EVENT, 0, user_data)

    def cursor(self, crtc_id, flags, x=0, y=0, width=0, height=0, handle=0):
        self.ioctl(IOCTL_CURSOR, CURSOR, flags, crtc_id, x, y, width, height, handle)

    def wait_vblank(self, count):
        """Block until ``count`` vblanks from now on CRTC 0: (sequence, timestamp in seconds)."""
        f = self.ioctl(IOCTL_WAIT_VBLANK, WAIT_VBLANK, VBLANK_RELATIVE, count, 0, 0)
        return f[1], f[2] + f[3] / 1e6

    def event(self, timeout):
        """The next DRM event: (type, user_data, timestamp, sequence), or None at the deadline."""
        if not select.select([self.fd], [], [], timeout)[0]:
            return None
        data = os.read(self.fd, 4096)
        kind, _length, user, sec, usec, seq, _crtc = struct.unpack_from(EVENT_VBLANK_FMT, data)
        return kind, user, sec + usec / 1e6, seq


def errno_of(fn):
    """0 when fn() succeeds, else the errno it raised."""
    try:
        fn()
    except OSError as e:
        return e.errno or errno.EIO
    return 0
