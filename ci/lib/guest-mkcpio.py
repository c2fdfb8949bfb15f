"""Write a directory tree as a gzip-compressed newc cpio archive (a Linux initramfs).

Usage: guest-mkcpio.py ROOT OUT.gz
Entries are sorted, owned by root, with mtime 0, so the same tree gives the same bytes.
"""
import gzip
import os
import stat
import sys


def entries(root):
    yield "."
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        for name in sorted(dirnames + filenames):
            yield os.path.normpath(os.path.join(rel, name))


def header(ino, mode, nlink, size, name):
    fields = (ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name) + 1, 0)
    return b"070701" + b"".join(b"%08X" % f for f in fields)


def pad(out, n):
    out.write(b"\0" * (-n % 4))


def write(root, path):
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as out:
        for ino, rel in enumerate(entries(root), start=1):
            full = os.path.join(root, rel)
            st = os.lstat(full)
            mode = st.st_mode
            if stat.S_ISLNK(mode):
                data = os.readlink(full).encode()
            elif stat.S_ISREG(mode):
                with open(full, "rb") as f:
                    data = f.read()
            elif stat.S_ISDIR(mode):
                data = b""
            else:
                raise SystemExit(f"unsupported file type: {rel}")
            name = rel.encode()
            head = header(ino, mode, 2 if stat.S_ISDIR(mode) else 1, len(data), name)
            out.write(head + name + b"\0")
            pad(out, len(head) + len(name) + 1)
            out.write(data)
            pad(out, len(data))
        trailer = b"TRAILER!!!"
        head = header(0, 0, 1, 0, trailer)
        out.write(head + trailer + b"\0")
        pad(out, len(head) + len(trailer) + 1)


if __name__ == "__main__":
    write(sys.argv[1], sys.argv[2])
