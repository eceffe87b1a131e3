#!/usr/bin/env python3
"""Turns the fault suite's JSON lines (TABLESNAP_FAULT_REPORT) into the README's markdown table.

    fault-report.py REPORT.jsonl > table.md

Rows with the same fault are summed (a fault tried in several runs); the exit code is 1 when any
file was lost or not verified, so the table can gate a release.
"""
import json
import sys


def main(path: str) -> int:
    rows: dict[str, dict] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                print(f"{path}:{n}: not JSON ({e})", file=sys.stderr)
                return 2
            row = rows.setdefault(
                r["fault"],
                {"injected": 0, "expected": 0, "verified": 0, "lost": 0, "runs": 0, "notes": []},
            )
            row["runs"] += 1
            for k in ("injected", "expected", "verified", "lost"):
                row[k] += int(r[k])
            if r.get("note") and r["note"] not in row["notes"]:
                row["notes"].append(r["note"])
    if not rows:
        print(f"{path}: no results", file=sys.stderr)
        return 2
    print("| fault | injected | files expected | files verified | lost | notes |")
    print("|---|---:|---:|---:|---:|---|")
    bad = False
    for fault, r in rows.items():
        ok = r["lost"] == 0 and r["verified"] == r["expected"]
        bad |= not ok
        notes = "; ".join(r["notes"]).replace("|", "\\|")
        print(
            f"| {fault} | {r['injected']} | {r['expected']} | {r['verified']} | "
            f"{r['lost']}{'' if ok else ' ❌'} | {notes} |"
        )
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
