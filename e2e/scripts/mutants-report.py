#!/usr/bin/env python3
"""Per-module table of a cargo-mutants run, from its outcomes.json files.

    mutants-report.py [--equivalent EQUIVALENT.md] [--fail-on-missed] OUTCOMES.json|DIR ...

A DIR is searched for outcomes.json files (e2e/results/mutants/ holds one per module). One row per
source file mutated: caught, missed, timed out, unviable, and the percent caught of the viable ones
(caught + missed + timed out); a timeout counts as not caught. Only what the files say is printed:
a file with no mutant tested has no row.

With --equivalent, missed mutants listed under its heading "## Equivalent" (lines "- `NAME` ...",
NAME being the mutant's name, line and column optional) are counted in a column of their own and
left out of the viable ones. With --fail-on-missed, the exit code is 1 when a missed mutant is not
listed there (the CI gate); it is 0 otherwise. A timed-out mutant made the tests hang: it is
shown and not counted as caught, but it does not fail the gate.
"""
import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

SUMMARIES = {
    "CaughtMutant": "caught",
    "MissedMutant": "missed",
    "Timeout": "timeout",
    "Unviable": "unviable",
}


def outcome_files(paths):
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(p.rglob("outcomes.json"))
        else:
            yield p


def mutant_of(outcome):
    """The mutant of an outcome, or None for the baseline."""
    scenario = outcome.get("scenario")
    if isinstance(scenario, dict) and "Mutant" in scenario:
        return scenario["Mutant"]
    return None


def name_of(mutant):
    """cargo-mutants' mutant name without line and column: stable across unrelated edits."""
    name = mutant.get("name")
    if not name:
        fn = (mutant.get("function") or {}).get("function_name", "")
        name = f"{mutant['file']}: replace {mutant.get('replacement', '')} in {fn}"
    return re.sub(r"^([^:]+):\d+:\d+:", r"\1:", name)


def equivalents(path):
    if not path or not Path(path).exists():
        return set()
    # Only the list under the heading "## Equivalent": the rest of the file may name survivors.
    names, inside = set(), False
    for line in Path(path).read_text().splitlines():
        if line.startswith("## "):
            inside = line.startswith("## Equivalent")
        elif inside and (m := re.match(r"- `([^`]+)`", line)):
            names.add(re.sub(r"^([^:]+):\d+:\d+:", r"\1:", m.group(1)))
    return names


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--equivalent")
    ap.add_argument("--fail-on-missed", action="store_true")
    args = ap.parse_args()
    equiv = equivalents(args.equivalent)

    rows = defaultdict(lambda: defaultdict(int))
    unlisted, timeouts = [], []
    seen = set()
    files = list(outcome_files(args.paths))
    if not files:
        print("no outcomes.json found in " + " ".join(args.paths), file=sys.stderr)
        return 1
    for f in files:
        data = json.loads(Path(f).read_text())
        for o in data.get("outcomes", []):
            m = mutant_of(o)
            if m is None:
                continue
            kind = SUMMARIES.get(o.get("summary"))
            if kind is None:
                continue
            name = m.get("name") or name_of(m)
            if name in seen:  # the same mutant measured twice (a rerun): count it once
                continue
            seen.add(name)
            row = rows[m["file"]]
            if kind == "missed" and name_of(m) in equiv:
                row["equivalent"] += 1
                continue
            row[kind] += 1
            if kind == "missed":
                unlisted.append(f"missed: {name}")
            elif kind == "timeout":
                timeouts.append(f"timed out: {name}")

    show_equiv = bool(args.equivalent)
    head = ["module", "caught", "missed", "timed out", "unviable"]
    if show_equiv:
        head.insert(3, "equivalent")
    head.append("caught of viable")
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    total = defaultdict(int)
    for file in sorted(rows):
        r = rows[file]
        for k, v in r.items():
            total[k] += v
        print(line(file, r, show_equiv))
    if len(rows) > 1:
        print(line("**all**", total, show_equiv))
    for u in unlisted + timeouts:
        print(u, file=sys.stderr)
    if args.fail_on_missed and unlisted:
        return 1
    return 0


def line(label, r, show_equiv):
    # Equivalent mutants cannot be caught: they are left out of the viable count.
    viable = r["caught"] + r["missed"] + r["timeout"]
    pct = f"{100 * r['caught'] / viable:.1f}%" if viable else "n/a"
    cells = [label, r["caught"], r["missed"], r["timeout"], r["unviable"]]
    if show_equiv:
        cells.insert(3, r["equivalent"])
    cells.append(pct)
    return "| " + " | ".join(str(c) for c in cells) + " |"


if __name__ == "__main__":
    sys.exit(main())
