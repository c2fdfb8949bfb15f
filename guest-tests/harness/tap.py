"""TAP from the guest's serial console, split per guest script.

/init prints each script's output between "# devmodel-test begin NAME" and
"# devmodel-test end NAME rc=N". A script that asks for a reboot (rc=100) continues in a later
section of the same name; the sections are joined. Lines that are not TAP (kernel messages)
are ignored.
"""
import re
from dataclasses import dataclass, field

BEGIN = re.compile(r"^# devmodel-test begin (\S+)$")
END = re.compile(r"^# devmodel-test end (\S+) rc=(\d+)$")
PLAN = re.compile(r"^1\.\.(\d+)(?:\s*#\s*(.*))?$")
RESULT = re.compile(r"^(not )?ok\b(?:\s+(\d+))?(?:\s*-)?\s*([^#]*?)\s*(?:#\s*(.*))?$")
REBOOT_RC = 100


@dataclass
class Result:
    ok: bool
    number: int
    description: str
    directive: str = ""

    @property
    def passed(self):
        return self.ok or self.directive.upper().startswith(("TODO", "SKIP"))

    def __str__(self):
        return "%sok %d - %s%s" % ("" if self.ok else "not ", self.number, self.description,
                                   " # " + self.directive if self.directive else "")


@dataclass
class Section:
    name: str
    plan: int = None
    results: list = field(default_factory=list)
    rcs: list = field(default_factory=list)
    lines: list = field(default_factory=list)
    bailed: str = None
    open: bool = False

    def problems(self):
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
    def passed(self):
        return not self.problems()

    def text(self):
        return "\n".join(self.lines)


def parse_console(text):
    """{name: Section} in the order the scripts began."""
    sections, cur = {}, None
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
        m = RESULT.match(line)
        if m:
            number = int(m.group(2)) if m.group(2) else len(cur.results) + 1
            cur.results.append(Result(not m.group(1), number, m.group(3), (m.group(4) or "").strip()))
            continue
        if line.startswith("Bail out!"):
            cur.bailed = line[len("Bail out!"):].strip()
    return sections
