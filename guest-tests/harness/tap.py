"""TAP from the guest's serial console, split per guest script.

/init prints each script's output between "# devmodel-test begin NAME" and
"# devmodel-test end NAME rc=N". A script that asks for a reboot (rc=100) continues in a later
section of the same name; the sections are joined. Lines that are not TAP (kernel messages)
are ignored.

Test lines are read as TAP 14 writes them: `(not )?ok [N] [- ]description [# text]`. The text
after the first `#` that starts a word (`\\#` is a literal `#` in a description) is a
directive only when its first word is SKIP or TODO (any case): `# SKIP reason`, `# todo`.
Anything else there, such as the reason a guest check gives for failing ("# skipped 3 of 4
writes", "# TODO: ..."), is a comment and changes nothing. TAP 13's looser "SKIP\\S*" is not
followed, because the guest scripts put free text after `#` on failing lines. As in Perl's
TAP::Harness, a TODO test counts as passed whatever its result, while SKIP does not turn a
`not ok` into a pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

BEGIN = re.compile(r"^# devmodel-test begin (\S+)$")
END = re.compile(r"^# devmodel-test end (\S+) rc=(\d+)$")
PLAN = re.compile(r"^1\.\.(\d+)(?:\s*#\s*(.*))?$")
RESULT = re.compile(r"^(not )?ok\b(?:\s+(\d+))?(?:\s*-(?=\s|$))?\s*(.*)$")
# The `#` that ends a description: at its start or after whitespace, and not escaped.
COMMENT_MARK = re.compile(r"(?:^|(?<=\s))#")
DIRECTIVE = re.compile(r"^(SKIP|TODO)(?:\s+(.*))?$", re.IGNORECASE)
REBOOT_RC = 100


@dataclass
class Result:
    ok: bool
    number: int
    description: str
    comment: str = ""  # the text after the description's `#`, directive or not

    @property
    def directive(self) -> str:
        """The directive: SKIP, TODO or the empty string."""
        m = DIRECTIVE.match(self.comment)
        return m.group(1).upper() if m else ""

    @property
    def passed(self) -> bool:
        return self.ok or self.directive == "TODO"

    def __str__(self) -> str:
        return "%sok %d - %s%s" % ("" if self.ok else "not ", self.number, self.description,
                                   " # " + self.comment if self.comment else "")


def parse_result(line: str, default_number: int) -> Result | None:
    """One TAP test line, or None if the line is not one."""
    m = RESULT.match(line)
    if m is None:
        return None
    rest = m.group(3)
    mark = COMMENT_MARK.search(rest)
    description, comment = (rest[:mark.start()], rest[mark.end():]) if mark else (rest, "")
    number = int(m.group(2)) if m.group(2) else default_number
    return Result(not m.group(1), number, description.strip().replace("\\#", "#"), comment.strip())


@dataclass
class Section:
    name: str
    plan: int | None = None
    results: list[Result] = field(default_factory=list)
    rcs: list[int] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    bailed: str | None = None
    open: bool = False

    def problems(self) -> list[str]:
        """Why this script did not pass ([] if it did)."""
        out = []
        if self.open:
            out.append("the script did not finish (no end marker: the guest crashed, hung or was killed)")
        if self.bailed is not None:
            out.append("Bail out! " + self.bailed)
        if self.plan is None:
            out.append("no TAP plan (1..N)")
        elif len(self.results) != self.plan:
            out.append("planned %d tests, saw %d" % (self.plan, len(self.results)))
        out += [str(r) for r in self.results if not r.passed]
        if self.rcs and (self.rcs[-1] != 0 or any(rc != REBOOT_RC for rc in self.rcs[:-1])):
            out.append("exit statuses %s (want %s0)" % (self.rcs, "100s then " if len(self.rcs) > 1 else ""))
        return out

    @property
    def passed(self) -> bool:
        return not self.problems()

    def text(self) -> str:
        return "\n".join(self.lines)


def parse_console(text: str) -> dict[str, Section]:
    """{name: Section} in the order the scripts began."""
    sections: dict[str, Section] = {}
    cur: Section | None = None
    for raw in text.splitlines():
        line = raw.rstrip("\r").rstrip()
        m = BEGIN.match(line)
        if m:
            cur = sections.setdefault(m.group(1), Section(m.group(1)))
            cur.open = True
            continue
        if cur is None:
            continue
        m = END.match(line)
        if m and m.group(1) == cur.name:
            cur.rcs.append(int(m.group(2)))
            cur.open = False
            cur = None
            continue
        cur.lines.append(line)
        m = PLAN.match(line)
        if m:
            cur.plan = int(m.group(1))
            continue
        result = parse_result(line, len(cur.results) + 1)
        if result is not None:
            cur.results.append(result)
            continue
        if line.startswith("Bail out!"):
            cur.bailed = line[len("Bail out!"):].strip()
    return sections
