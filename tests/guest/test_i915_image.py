"""The i915 image's host-side pieces, without QEMU: the module load order ci/setup-guest takes
from the modules' .modinfo, the harness's choice of image per script, and its reading of the
kernel log the guest prints."""
import struct
import subprocess
import sys

import pytest

import harness

MODDEPS = harness.repo_root() / "ci" / "lib" / "guest-moddeps.py"


def fake_module(path, **modinfo):
    """A minimal ELF64 little-endian object whose only content is a .modinfo section."""
    info = b"".join(b"%s=%s\0" % (k.encode(), v.encode()) for k, v in modinfo.items())
    shstr = b"\0.shstrtab\0.modinfo\0"
    ehsize, shentsize = 64, 64
    shstr_off = ehsize
    info_off = shstr_off + len(shstr)
    shoff = (info_off + len(info) + 7) & ~7
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    head = ident + struct.pack("<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, ehsize, 0, 0, shentsize, 3, 1)

    def shdr(name, type_, off, size):
        return struct.pack("<IIQQQQIIQQ", name, type_, 0, 0, off, size, 0, 0, 1, 0)

    body = head + shstr + info
    body += bytes(shoff - len(body))
    body += shdr(0, 0, 0, 0) + shdr(1, 3, shstr_off, len(shstr)) + shdr(11, 1, info_off, len(info))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)


def moddeps(tree, *roots):
    return subprocess.run([sys.executable, str(MODDEPS), str(tree), *roots], capture_output=True, text=True,
                          check=False)


@pytest.fixture
def tree(tmp_path):
    """i915-like: the driver needs two helpers that share a core module; names mix - and _."""
    fake_module(tmp_path / "drivers/gpu/drm/drm.ko", name="drm", depends="")
    fake_module(tmp_path / "drivers/gpu/drm/drm_kms_helper.ko", name="drm_kms_helper", depends="drm")
    fake_module(tmp_path / "drivers/i2c/algos/i2c-algo-bit.ko", name="i2c_algo_bit", depends="")
    fake_module(tmp_path / "drivers/gpu/drm/i915/i915.ko", name="i915",
                depends="drm_kms_helper,i2c-algo-bit,drm", license="GPL")
    fake_module(tmp_path / "drivers/other/unrelated.ko", name="unrelated", depends="")
    return tmp_path


def test_load_order_puts_every_dependency_first_once(tree):
    r = moddeps(tree, "i915")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["drivers/gpu/drm/drm.ko", "drivers/gpu/drm/drm_kms_helper.ko",
                                "drivers/i2c/algos/i2c-algo-bit.ko", "drivers/gpu/drm/i915/i915.ko"]


def test_a_missing_dependency_is_named(tree):
    fake_module(tree / "x/needy.ko", name="needy", depends="drm,ghost")
    r = moddeps(tree, "needy")
    assert r.returncode == 1 and "no module ghost" in r.stderr and "needy" in r.stderr, r.stderr


def test_a_cycle_is_an_error(tree):
    fake_module(tree / "x/a.ko", name="a", depends="b")
    fake_module(tree / "x/b.ko", name="b", depends="a")
    r = moddeps(tree, "a")
    assert r.returncode == 1 and "cycle: a -> b -> a" in r.stderr, r.stderr


def test_a_softdep_is_not_silently_dropped(tree):
    fake_module(tree / "x/soft.ko", name="soft", depends="drm", softdep="pre: crc32c")
    r = moddeps(tree, "soft")
    assert r.returncode == 1 and "softdep" in r.stderr, r.stderr


def test_a_compressed_module_is_refused(tree):
    (tree / "x").mkdir()
    (tree / "x/packed.ko").write_bytes(b"\xfd7zXZ\0" + bytes(64))
    r = moddeps(tree, "packed")
    assert r.returncode == 1 and "not an ELF64" in r.stderr, r.stderr


def test_scripts_are_sorted_by_the_image_they_need():
    assert harness.script_image("i915") == "i915"
    assert harness.script_image("enum") == "base"
    assert "i915" in harness.guest_scripts(image="i915")
    assert "i915" not in harness.guest_scripts()
    assert "enum" in harness.guest_scripts() and "enum" not in harness.guest_scripts(image="i915")


def test_scripts_for_two_images_cannot_share_a_boot(tmp_path):
    with pytest.raises(harness.HarnessError, match="different guest images"):
        harness.run_guest(["enum", "i915"], tmp_path, device=None)


def test_an_unknown_image_is_named():
    with pytest.raises(harness.HarnessError, match="no guest image 'gen12'"):
        harness.find_guest_image("gen12")


def test_the_kernel_log_is_cut_from_the_console():
    console = ("[    0.1] early line\n# devmodel-test begin x\n1..1\nok 1 - a\n# devmodel-test end x rc=0\n"
               "# devmodel-dmesg begin\r\n<5>[    0.000000] Linux version 6.1\r\n<4>[    1.5] i915 warn\r\n"
               "# devmodel-dmesg end\r\n# devmodel-guest done\n")
    assert harness.dmesg_of(console) == "<5>[    0.000000] Linux version 6.1\n<4>[    1.5] i915 warn\n"
    assert harness.dmesg_of("# devmodel-guest done\n") is None
    # The log's lines are outside every script's section: they never count as TAP.
    assert [r.description for r in harness.parse_console(console)["x"].results] == ["a"]


LIBDEPS = harness.repo_root() / "ci" / "lib" / "guest-libdeps.py"


def fake_elf(path, needed=(), runpath=None):
    """An ELF64 file with a dynamic section naming its DT_NEEDED libraries (and DT_RUNPATH)."""
    strtab = b"\0"
    entries = []
    for name in needed:
        entries.append((1, len(strtab)))
        strtab += name.encode() + b"\0"
    if runpath is not None:
        entries.append((29, len(strtab)))
        strtab += runpath.encode() + b"\0"
    dynamic = b"".join(struct.pack("<qQ", tag, val) for tag, val in entries) + struct.pack("<qQ", 0, 0)
    ehsize, shentsize = 64, 64
    str_off = ehsize
    dyn_off = str_off + len(strtab)
    shoff = dyn_off + len(dynamic)
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    head = ident + struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 0, shoff, 0, ehsize, 0, 0, shentsize, 3, 0)

    def shdr(type_, off, size, link=0):
        return struct.pack("<IIQQQQIIQQ", 0, type_, 0, 0, off, size, link, 0, 8, 16 if type_ == 6 else 0)

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(head + strtab + dynamic + shdr(0, 0, 0) + shdr(3, str_off, len(strtab))
                     + shdr(6, dyn_off, len(dynamic), link=1))


@pytest.fixture
def packages(tmp_path):
    """SRC: a program needing libfoo (through a soname link) and libc; libfoo needs libbar and
    libc; a library nothing needs. DEST: the guest root, libc already in it."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    fake_elf(src / "usr/bin/prog", ["libfoo.so.1", "libc.so.6"])
    fake_elf(src / "usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3", ["libbar.so.0", "libc.so.6"])
    (src / "usr/lib/x86_64-linux-gnu/libfoo.so.1").symlink_to("libfoo.so.1.2.3")
    fake_elf(src / "lib/x86_64-linux-gnu/libbar.so.0", [])
    fake_elf(src / "usr/lib/x86_64-linux-gnu/libunused.so.9", [])
    fake_elf(src / "lib/x86_64-linux-gnu/libc.so.6", [])  # the package's copy: the root's wins
    fake_elf(dest / "lib/x86_64-linux-gnu/libc.so.6", [])
    (src / "usr/share/data").mkdir(parents=True)
    (src / "usr/share/data/table.txt").write_text("not ELF\n")
    return src, dest


def libdeps(src, dest, *paths):
    return subprocess.run([sys.executable, str(LIBDEPS), str(src), str(dest), *paths], capture_output=True,
                          text=True, check=False)


def test_programs_come_with_their_library_closure_only(packages):
    src, dest = packages
    before = (dest / "lib/x86_64-linux-gnu/libc.so.6").read_bytes()
    r = libdeps(src, dest, "usr/bin/prog", "usr/share/data")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "2 files, 2 libraries"
    assert (dest / "usr/lib/x86_64-linux-gnu/libfoo.so.1").is_symlink()
    assert (dest / "usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3").is_file()
    assert (dest / "lib/x86_64-linux-gnu/libbar.so.0").is_file()
    assert (dest / "usr/share/data/table.txt").read_text() == "not ELF\n"
    assert not (dest / "usr/lib/x86_64-linux-gnu/libunused.so.9").exists()
    assert (dest / "lib/x86_64-linux-gnu/libc.so.6").read_bytes() == before


def test_a_runpath_relative_to_the_program_is_searched(packages):
    src, dest = packages
    fake_elf(src / "usr/libexec/tool/bench", ["libprivate.so"], runpath="$ORIGIN/../lib")
    fake_elf(src / "usr/libexec/lib/libprivate.so", [])
    r = libdeps(src, dest, "usr/libexec/tool")
    assert r.returncode == 0, r.stderr
    assert (dest / "usr/libexec/lib/libprivate.so").is_file()


def test_a_library_no_package_holds_is_named(packages):
    src, dest = packages
    fake_elf(src / "usr/bin/broken", ["libmissing.so.4"])
    r = libdeps(src, dest, "usr/bin/broken")
    assert r.returncode == 1 and "usr/bin/broken needs libmissing.so.4" in r.stderr
