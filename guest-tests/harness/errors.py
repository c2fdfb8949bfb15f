class HarnessError(Exception):
    """Something around the guest went wrong (not a guest test result). The message says what
    and carries the tail of the relevant log (console, QEMU stderr, device model log)."""


def tail(text, lines=40):
    rows = text.rstrip("\n").splitlines()
    return "\n".join(rows[-lines:]) if rows else "(empty)"


def tail_file(path, lines=40):
    try:
        with open(path, errors="replace") as f:
            return tail(f.read(), lines)
    except FileNotFoundError:
        return "(no file %s)" % path
