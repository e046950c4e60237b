#!/usr/bin/env python3
"""Fails when README.md or BENCHMARKS.md quotes a figure that the run file
it cites does not hold. Python 3 standard library only; `.ci/run` runs it.

The convention (BENCHMARKS.md, "Where the numbers come from"):

- A block is a paragraph, a list or a table (lines up to a blank line;
  headings and fenced code are not blocks). A block that links one or
  more run files, `[...](bench/results/runs/<file>)`, is *cited*: every
  number in it must be in one of the files it links (a run's `.json`
  may be linked beside its `.md`, whose header speaks for both). A table
  or a list with no link of its own takes the links of the paragraph just
  before it (its caption), if that paragraph has links of its own.
- A table whose header row is a header row of a cited file is a copy of
  that file's table: each of its rows (bold and code marks aside) must be
  a row of the file, so a changed figure fails even where the same
  number appears elsewhere in the file.
- A number in a code span (`...`) is a literal — a command, a setting, a
  name — not a figure, and is not checked; nor are numbers glued to a
  letter (p99, Ed25519, HTTP/1.1, 5xx).
- A figure matches a number of the file when it is that number written
  the same way after dropping thousands separators, or that number rounded
  to the figure's decimals; a `k` or `M` suffix means thousands or
  millions, rounded likewise (92.9k matches 92,874; 5.66M 5,657,559).
  Nothing else is derived: a ratio or a difference the file does not hold
  cannot be quoted.
- A cited block (with its caption, and its section's heading) must also
  name each cited run's script and machine as the run's header records
  them (`- script:`, the part of `- machine:` before the parenthesis, e.g.
  "AMD EPYC", or "not recorded").
- A block that cites nothing must not look like a measurement: no req/s,
  no `N×`, no instruction counts. Configuration defaults and limits
  (`32 KiB`, `every 250 ms`) are not figures and live in uncited blocks.

It also checks that every run file has its header and that
bench/results/LATEST names existing files.

    python3 bench/check_figures.py         # README.md and BENCHMARKS.md
    python3 bench/check_figures.py -v      # and list every figure checked
"""
import decimal
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
RUNS = os.path.join(RESULTS, "runs")
DOCS = ("README.md", "BENCHMARKS.md")

CITATION = re.compile(r"\]\((bench/results/runs/[^)\s#]+)\)")
CODE = re.compile(r"`[^`]*`")
LINK_TARGET = re.compile(r"\]\([^)]*\)")
COMMENT = re.compile(r"<!--.*?-->")
# A figure in the docs: not glued to a letter, a dot, or "letter/" / "letter-".
FIGURE = re.compile(r"(?<![\w.])(?<![A-Za-z]/)(?<![A-Za-z]-)"
                    r"(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?([kM](?![A-Za-z]))?(?!\w)")
# Any number in a run file.
NUMBER = re.compile(r"(\d{1,3}(?:,\d{3})+(?!\d)|\d+)(\.\d+)?([kM](?![A-Za-z]))?")
MEASURED = [re.compile(p) for p in (r"\d\s*k?\s*req/s", r"\d(?:\.\d+)?\s*×", r"\d\s+instructions\b",
                                    r"\d(?:\.\d+)?k/s")]
SCALE = {None: 1, "k": 1000, "M": 1000000}


def value(whole, frac):
    return decimal.Decimal(whole.replace(",", "") + (frac or ""))


def header(path):
    fields = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip() == "---":
                break
            m = re.match(r"- (\w[\w-]*): (.*)", line)
            if m:
                fields[m.group(1)] = m.group(2).strip()
    return fields


class Run:
    def __init__(self, rel):
        self.rel = rel
        self.path = os.path.join(ROOT, rel)
        with open(self.path, encoding="utf-8") as f:
            text = f.read()
        lines = text.split("\n")
        # The numbers of each line; the header is the lines before the rule.
        self.line_values = []
        for line in lines:
            values = set()
            for m in NUMBER.finditer(line):
                v = value(m.group(1), m.group(2))
                values.add(v)
                if m.group(3):
                    values.add(v * SCALE[m.group(3)])
            self.line_values.append(values)
        self.header_lines = lines.index("---") if "---" in lines else 0
        # A run's JSON has no header: its .md beside it speaks for it.
        md = self.path[:-len(".json")] + ".md" if self.path.endswith(".json") else self.path
        self.fields = header(md) if os.path.isfile(md) else {}
        script = self.fields.get("script", "")
        self.scripts = {script.split(" (")[0]} | set(re.findall(r"[\w./-]+\.(?:py|sh|rs)\b", script))
        self.machine = self.fields.get("machine", "").split(" (")[0]
        self.rows = {row(l) for l in lines if l.lstrip().startswith("|")}
        self.heads = {row(l) for l, below in zip(lines, lines[1:])
                      if l.lstrip().startswith("|") and re.match(r"\s*\|\s*:?-", below)}

    def lines_holding(self, whole, frac, suffix):
        """The numbers of the lines that hold the figure."""
        figure = value(whole, frac)
        quantum = decimal.Decimal(1) if not frac else decimal.Decimal("1e-%d" % (len(frac) - 1))
        found = set()
        for n, values in enumerate(self.line_values):
            for v in values:
                v = v / SCALE[suffix]
                if any(v.quantize(quantum, rounding=r) == figure
                       for r in (decimal.ROUND_HALF_UP, decimal.ROUND_HALF_EVEN)):
                    found.add(n)
                    break
        return found


def row(line):
    """A table row with bold and code marks and spacing dropped."""
    return " ".join(line.replace("**", "").replace("`", "").split())


def blocks(path):
    """(line number, lines, heading) for each paragraph, list or table."""
    out, current, start, heading, fenced = [], [], 0, "", False
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for n, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            if current:
                out.append((start, current, heading))
            current = []
            continue
        if fenced:
            continue
        if not line.strip() or re.match(r"#{1,6} ", line):
            if current:
                out.append((start, current, heading))
            current = []
            if line.strip():
                heading = line
            continue
        if not current:
            start = n
        current.append(line)
    if current:
        out.append((start, current, heading))
    return out


def units(text, table):
    """(sentence or table row, its offset in text)."""
    pattern = r"\n" if table else r"(?<=[.;:!?])\s+|\n(?=\s*[-*] )"
    start = 0
    for m in re.finditer(pattern, text):
        yield text[start:m.start()], start
        start = m.end()
    yield text[start:], start


def check_doc(name, runs, errors, verbose):
    checked = 0
    previous = None
    for start, lines, heading in blocks(os.path.join(ROOT, name)):
        text = "\n".join(lines)
        cited = CITATION.findall(CODE.sub(" ", text))
        context = text
        own = cited
        follows = all(l.lstrip().startswith("|") for l in lines) or re.match(r"\s*([-*]|\d+\.) ", lines[0])
        if not cited and follows and previous and previous[2] == heading and previous[3]:
            cited = previous[3]
            context = previous[1] + "\n" + text
        previous = (start, text, heading, own)
        bare = COMMENT.sub("", text)
        bare = CODE.sub(" ", LINK_TARGET.sub("]", bare))
        if not cited:
            for pattern in MEASURED:
                m = pattern.search(bare)
                if m:
                    errors.append(f"{name}:{start}: '{m.group(0)}' looks measured but the block cites "
                                  "no run file (bench/results/runs/...)")
                    break
            continue
        files = []
        for rel in dict.fromkeys(cited):
            if rel not in runs:
                if not os.path.isfile(os.path.join(ROOT, rel)):
                    errors.append(f"{name}:{start}: cites {rel}, which does not exist")
                    continue
                runs[rel] = Run(rel)
            run = runs[rel]
            files.append(run)
            wider = " ".join((context + " " + heading).split())
            if not any(s and s in wider for s in run.scripts):
                errors.append(f"{name}:{start}: cites {rel} without naming its script "
                              f"({run.fields.get('script', 'no script in its header')})")
            if not run.machine or run.machine not in wider:
                errors.append(f"{name}:{start}: cites {rel} without naming its machine "
                              f"('{run.machine or 'no machine in its header'}')")
        if not files:
            continue
        # A table with a run's own header row is a copy of that run's
        # rows, row for row.
        if all(l.lstrip().startswith("|") for l in lines):
            sources = [f for f in files if row(lines[0]) in f.heads]
            for n, l in enumerate(lines[2:] if sources else [], start + 2):
                if not any(row(l) in f.rows for f in sources):
                    errors.append(f"{name}:{n}: this row is not a row of "
                                  + ", ".join(f.rel for f in sources))
        # Each sentence (or table row): its figures, and the lines of the
        # cited files that hold each. A figure of three or more significant
        # digits held by exactly one line is an anchor; a line two anchors
        # agree on is quoted by the sentence. When a sentence quotes lines,
        # its short figures (0.79, 52: the ones that recur) must be on them
        # (or in a run's header: dates, the machine).
        for unit, offset in units(bare, all(l.lstrip().startswith("|") for l in lines)):
            found = []
            for m in FIGURE.finditer(unit):
                whole, frac, suffix = m.groups()
                where = {(f.rel, n) for f in files for n in f.lines_holding(whole, frac, suffix)}
                line = start + bare[:offset + m.start()].count("\n")
                strong = len((whole + (frac or "")).replace(",", "").replace(".", "").lstrip("0")) >= 3
                found.append((m.group(0), where, line, strong))
                checked += 1
            anchored = [next(iter(w)) for _, w, _, strong in found if strong and len(w) == 1]
            anchors = {a for a in anchored if anchored.count(a) >= 2}
            for figure, where, line, strong in found:
                if not where:
                    errors.append(f"{name}:{line}: {figure} is in none of "
                                  + ", ".join(f.rel for f in files))
                elif anchors and not strong and not where & anchors and not any(
                        n < runs[rel].header_lines for rel, n in where):
                    quoted = ", ".join(f"{rel}:{n + 1}" for rel, n in sorted(anchors))
                    errors.append(f"{name}:{line}: {figure} is in the cited files, but not on the "
                                  f"line its sentence quotes ({quoted})")
                elif verbose:
                    print(f"{name}:{line}: {figure} ok")
    return checked


def check_runs(errors):
    for entry in sorted(os.listdir(RUNS)):
        if entry.endswith((".md", ".txt")):
            fields = header(os.path.join(RUNS, entry))
            missing = [k for k in ("run", "script", "machine") if k not in fields]
            if missing:
                errors.append(f"bench/results/runs/{entry}: header lacks {', '.join(missing)}")
    with open(os.path.join(RESULTS, "LATEST"), encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip() and not line.startswith("#"):
                kind, rel = line.split()
                if not os.path.isfile(os.path.join(RESULTS, rel)):
                    errors.append(f"bench/results/LATEST:{n}: {kind} points at {rel}, which does not exist")


def main():
    verbose = "-v" in sys.argv[1:]
    docs = [a for a in sys.argv[1:] if a != "-v"] or DOCS
    errors, runs = [], {}
    check_runs(errors)
    checked = sum(check_doc(d, runs, errors, verbose) for d in docs)
    for e in errors:
        print(e)
    if errors:
        print(f"check_figures: {len(errors)} problem(s)")
        sys.exit(1)
    print(f"check_figures: {checked} figures in {', '.join(docs)} found in the {len(runs)} run files they cite")


if __name__ == "__main__":
    main()
