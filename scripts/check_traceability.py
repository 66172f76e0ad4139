#!/usr/bin/env python3
"""Checks docs/traceability.md and docs/errors.md against the code and the seed documents.

1. Every clause of phase7-failure-model.txt and phase7-vision.txt, and every invariant id of
   phase7-requirements.md, has a row with at least one test (read from ../shared/spec when it is
   there; the expected lists below are the fallback and are checked against it).
2. Every test a row names exists: FILE::function, with `fn function(` in FILE.
3. docs/errors.md lists exactly the stable error codes (PHASE7_*, AERO_*) in src/.

Exits non-zero, printing every problem, when anything is off.
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SPEC = ROOT.parent / "shared" / "spec"

FM = ["FM-1", "FM-2", "FM-3", "FM-4.1", "FM-4.2", "FM-4.3", "FM-5.1", "FM-5.2", "FM-5.3", "FM-6.1", "FM-6.2",
      "FM-7.1", "FM-7.2", "FM-8.1", "FM-8.2", "FM-9", "FM-10", "FM-11", "FM-12", "FM-13"]
V = ["V-1", "V-2", "V-3.1", "V-3.2", "V-3.3", "V-3.4", "V-3.5", "V-3.6"] + [f"V-{i}" for i in range(4, 15)]
INV = ["P7-A1", "P7-A2", "P7-A3", "P7-E1", "P7-E2", "P7-E3", "P7-F1", "P7-F2", "P7-F3", "P7-D1", "P7-D2",
       "P7-O1", "P7-O2", "P7-O3", "P7-S1", "P7-S2", "P7-S3",
       "P6-A1", "P6-A1a", "P6-A2", "P6-A3", "P6-S1", "P6-S2", "P6-F1", "P6-D1"]

problems = []


def spec_clauses():
    """Clause ids read from the seed documents themselves, when they are present."""
    found = set()
    fm = SPEC / "phase7-failure-model.txt"
    if fm.exists():
        for line in fm.read_text().splitlines():
            m = re.match(r"^(\d+)(?:\.(\d+))?[. ]\s*[A-Z]", line)
            if m:
                found.add(f"FM-{m.group(1)}" + (f".{m.group(2)}" if m.group(2) else ""))
        # A section with subsections is covered by its subsections.
        for parent in {c.rsplit(".", 1)[0] for c in found if "." in c}:
            found.discard(parent)
    vision = SPEC / "phase7-vision.txt"
    if vision.exists():
        for line in vision.read_text().splitlines():
            m = re.match(r"^(\d+)\. [A-Z]", line)
            if m:
                found.add(f"V-{m.group(1)}")
        found.discard("V-3")  # covered by its six non-goal groups V-3.1 .. V-3.6
    req = SPEC / "phase7-requirements.md"
    if req.exists():
        found.update(re.findall(r"\b(P[67]-[A-Z]\d+a?)\b", req.read_text()))
    return found


def main() -> int:
    doc = (ROOT / "docs" / "traceability.md").read_text()
    rows = {}
    for line in doc.splitlines():
        m = re.match(r"^\| ((?:FM|V)-[\d.]+|P[67]-[A-Z]\d+a?) \|[^|]*\| (.*) \|$", line)
        if m:
            if m.group(1) in rows:
                problems.append(f"traceability: {m.group(1)} listed twice")
            rows[m.group(1)] = re.findall(r"`([^`]+::[^`]+)`", m.group(2))
    required = set(FM + V + INV)
    from_spec = spec_clauses()
    if from_spec:
        for c in sorted(from_spec - required):
            problems.append(f"traceability: the seed documents have {c}, which this checker does not expect")
        for c in sorted(c for c in required - from_spec if not c.startswith("V-3.")):
            problems.append(f"traceability: {c} is not in the seed documents")
    else:
        print("note: ../shared/spec not found; checking against the built-in clause list")
    for c in sorted(required):
        if c not in rows:
            problems.append(f"traceability: no row for {c}")
        elif not rows[c]:
            problems.append(f"traceability: {c} lists no test")
    for c in sorted(set(rows) - required):
        problems.append(f"traceability: unexpected row {c}")
    tests = 0
    for c, refs in rows.items():
        for ref in refs:
            file, name = ref.split("::")
            path = ROOT / file
            tests += 1
            if not path.exists():
                problems.append(f"traceability: {c}: {file} does not exist")
            elif not re.fullmatch(r"[a-z0-9_]+", name) or not re.search(rf"\bfn {re.escape(name)}\s*\(", path.read_text()):
                problems.append(f"traceability: {c}: {file} has no test {name}")

    codes_src = set()
    for f in (ROOT / "src").rglob("*.rs"):
        codes_src.update(re.findall(r'"((?:PHASE7|AERO)_[A-Z0-9_]+)"', f.read_text()))
    errors_doc = (ROOT / "docs" / "errors.md").read_text()
    codes_doc = set(re.findall(r"^\| `((?:PHASE7|AERO)_[A-Z0-9_]+)`", errors_doc, re.M))
    for c in sorted(codes_src - codes_doc):
        problems.append(f"errors.md: code {c} is used in src/ but not documented")
    for c in sorted(codes_doc - codes_src):
        problems.append(f"errors.md: code {c} is documented but not used in src/")

    if problems:
        for p in problems:
            print(p)
        return 1
    print(f"traceability: {len(rows)} clauses and invariant ids, {tests} test references, all present; "
          f"errors.md: {len(codes_doc)} codes, matching src/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
