"""The harness's reading of guest consoles (host only, no QEMU)."""
import pytest

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


def one(line: str) -> harness.tap.Result:
    s = harness.parse_console("# devmodel-test begin t\n1..1\n%s\n# devmodel-test end t rc=0\n" % line)
    (result,) = s["t"].results
    assert s["t"].passed == result.passed
    return result


@pytest.mark.parametrize(
    "line",
    [
        # A failure reason after `#` that merely begins like a directive is a comment.
        "not ok 1 - writes landed # skipped 3 of 4 writes",
        "not ok 1 - writes landed # Skipping: the window vanished",
        "not ok 1 - writes landed # todo: got 0x1",
        "not ok 1 - writes landed # TODO: got 0x1",
        "not ok 1 - writes landed # todos pending",
        # ... and so is a description that begins with the words, with or without a reason.
        "not ok 1 - skip the scratch page",
        "not ok 1 - SKIP # got 0x1",
        "not ok 1 todo list is empty",
        "not ok 1 - TODO",
        # A directive word not after a `#` that starts a word, or after an escaped one.
        "not ok 1 - register#SKIP",
        "not ok 1 - register \\# SKIP not a directive",
        # A later `#` does not make the first comment a directive.
        "not ok 1 - got 0x1 # want 0x0 # SKIP",
        # SKIP does not turn a failure into a pass (TAP::Harness agrees).
        "not ok 1 - writes landed # SKIP no window",
    ],
)
def test_failing_lines_fail(line: str) -> None:
    r = one(line)
    assert not r.ok and not r.passed


@pytest.mark.parametrize(
    "line, directive, description, comment",
    [
        ("ok 1 - enum # SKIP no device", "SKIP", "enum", "SKIP no device"),
        ("ok 1 # skip", "SKIP", "", "skip"),
        ("ok 1 - x #SKIP  two spaces", "SKIP", "x", "SKIP  two spaces"),
        ("not ok 1 - halting # TODO not solved", "TODO", "halting", "TODO not solved"),
        ("not ok 1 - halting #\ttodo", "TODO", "halting", "todo"),
        ("ok 1 - plain # got 0x0", "", "plain", "got 0x0"),
        ("ok 1 - a \\# in it", "", "a # in it", ""),
    ],
)
def test_directives_as_tap_14_writes_them(line: str, directive: str, description: str, comment: str) -> None:
    r = one(line)
    assert (r.directive, r.description, r.comment) == (directive, description, comment)
    assert r.passed


def test_failing_line_with_skip_like_reason_fails_the_script() -> None:
    s = harness.parse_console(
        "# devmodel-test begin g\n1..2\nok 1 - probe\nnot ok 2 - GGTT write # skipped: no window\n"
        "# devmodel-test end g rc=1\n"
    )
    assert s["g"].problems() == ["not ok 2 - GGTT write # skipped: no window", "exit statuses [1] (want 0)"]


def test_numbers_default_to_the_count() -> None:
    s = harness.parse_console("# devmodel-test begin n\n1..3\nok\nnot ok\nok - third\n# devmodel-test end n rc=0\n")
    got = [(r.number, r.ok, r.description) for r in s["n"].results]
    assert got == [(1, True, ""), (2, False, ""), (3, True, "third")]
    assert s["n"].problems() == ["not ok 2 - "]
