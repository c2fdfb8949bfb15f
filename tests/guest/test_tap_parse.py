"""The harness's reading of guest consoles (host only, no QEMU)."""
import harness

CONSOLE = """\
[    0.000000] Linux version 6.1.0
# devmodel-guest start kernel=6.1.0
# devmodel-test begin a
1..3
ok 1 - first
[    1.234567] uio_pci_generic 0000:00:03.0: some kernel line
not ok 2 - second # got 0x1, want 0x0
ok 3 - third # SKIP no device
# devmodel-test end a rc=1
# devmodel-test begin r
1..2
ok 1 - before
# devmodel-test end r rc=100
# devmodel-guest reboot
# devmodel-test begin r
ok 2 - after
# devmodel-test end r rc=0
# devmodel-test begin short
1..4
ok 1 - only one
# devmodel-test end short rc=0
# devmodel-test begin crashed
1..2
ok 1 - then the guest died
"""


def test_sections_and_problems():
    s = harness.parse_console(CONSOLE)
    assert list(s) == ["a", "r", "short", "crashed"]
    assert s["a"].plan == 3 and len(s["a"].results) == 3
    assert s["a"].problems() == ["not ok 2 - second # got 0x1, want 0x0", "exit statuses [1] (want 0)"]
    assert s["r"].passed, s["r"].problems()
    assert s["short"].problems() == ["planned 4 tests, saw 1"]
    assert s["crashed"].open and not s["crashed"].passed


def test_reboot_phase_must_be_followed_by_a_final_one():
    s = harness.parse_console("# devmodel-test begin r\n1..1\nok 1 - x\n# devmodel-test end r rc=100\n")
    assert not s["r"].passed


def test_bail_out_fails():
    s = harness.parse_console("# devmodel-test begin b\n1..2\nBail out! no device\n# devmodel-test end b rc=2\n")
    assert any(p.startswith("Bail out! no device") for p in s["b"].problems())
