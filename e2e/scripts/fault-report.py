#!/usr/bin/env python3
"""Turns the fault suite's JSON lines (TABLESNAP_FAULT_REPORT) into the README's markdown table.

    fault-report.py REPORT.jsonl > table.md

Every row is what one test run measured: files it expected (its own list), files an independent
client read back equal to the disk, files missing or different, multipart uploads left open. The
table has one row per run, never a literal. The exit code is 1 when any file was lost or not
verified, an upload was left open, a row came twice, or an expected row is missing (a test that
did not run, or died before it wrote its row), so the table can gate a release.
"""
import json
import sys

# The rows a complete run of the fault suite writes (agent/tests/faults.rs, secrets.rs).
CASSANDRA = " [cassandra mode, --checksum crc64nvme]"
EXPECTED = [
    "Garage server SIGKILLed and restarted during ingest",
    "Garage server SIGKILLed and restarted during ingest" + CASSANDRA,
    "3-node Garage (RF 3), one node SIGKILLed mid-run",
    "3-node Garage (RF 3), one node SIGKILLed mid-run" + CASSANDRA,
    "fault proxy: TCP resets mid-request, stalls beyond --request-timeout, 503 SlowDown",
    "fault proxy: TCP resets mid-request, stalls beyond --request-timeout, 503 SlowDown" + CASSANDRA,
    "one byte flipped in request bodies in transit (proxy), --checksum md5",
    "one byte flipped in request bodies in transit (proxy), --checksum crc64nvme",
    "one byte flipped in request bodies in transit (proxy)" + CASSANDRA,
    "agent SIGKILLed at random moments, restarted with -B",
    "agent SIGKILLed at random moments, restarted with -B" + CASSANDRA,
    "inotify queue overflow (max_queued_events 16), a burst of small files",
    "inotify queue overflow (max_queued_events 16), a burst of small files" + CASSANDRA,
    "files deleted (compaction) during their multipart upload, and an unreadable file",
    "SSTables compacted away during their multipart upload, staging on another filesystem" + CASSANDRA,
    "object deleted from the bucket behind the agent",
    "object deleted from the bucket behind the agent" + CASSANDRA,
    "access denied, then bucket deleted (permanent errors)",
    "access denied, then bucket deleted (permanent errors)" + CASSANDRA,
    "multipart upload left open by a killed run",
    "multipart upload left open by a killed run" + CASSANDRA,
    "secrets searched in every output (env, -k/-s, refused key)",
    "secrets searched in every output (env, -k/-s, refused key)" + CASSANDRA,
    "agent SIGKILLed during a compaction, restarted with -B [real Cassandra 5.0]",
    "Garage SIGKILLed while Cassandra flushed and compacted, then restarted [real Cassandra 5.0]",
]

FIELDS = ("injected", "expected", "verified", "lost", "open_uploads")


def read(path: str) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise SystemExit(f"{path}:{n}: not JSON ({e})")
            missing = [k for k in ("fault", *FIELDS) if k not in r]
            if missing:
                raise SystemExit(f"{path}:{n}: row lacks {', '.join(missing)}")
            rows.append(r)
    return rows


def render(rows: list[dict], expected: list[str]) -> tuple[list[str], list[str]]:
    """The table's lines and the problems found."""
    problems = []
    seen: dict[str, int] = {}
    for r in rows:
        seen[r["fault"]] = seen.get(r["fault"], 0) + 1
    for fault, n in seen.items():
        if n > 1:
            problems.append(f"row written {n} times (one run, one row): {fault}")
    for fault in expected:
        if fault not in seen:
            problems.append(f"row missing (test not run, or it died before writing it): {fault}")
    lines = [
        "| fault | injected | files expected | files verified | lost | uploads left open | notes |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ok = r["lost"] == 0 and r["verified"] == r["expected"] and r["open_uploads"] == 0
        if not ok:
            problems.append(
                f"{r['fault']}: {r['verified']} of {r['expected']} verified, "
                f"{r['lost']} lost, {r['open_uploads']} uploads open"
            )
        if r["injected"] == 0:
            problems.append(f"{r['fault']}: no fault hit a request")
        notes = str(r.get("note", "")).replace("|", "\\|")
        open_uploads = "unknown" if r["open_uploads"] >= 2**63 else r["open_uploads"]
        lines.append(
            f"| {r['fault']} | {r['injected']} | {r['expected']} | {r['verified']} | "
            f"{r['lost']}{'' if ok else ' ❌'} | {open_uploads} | {notes} |"
        )
    return lines, problems


def main(path: str) -> int:
    rows = read(path)
    if not rows:
        print(f"{path}: no results", file=sys.stderr)
        return 2
    lines, problems = render(rows, EXPECTED)
    print("\n".join(lines))
    for p in problems:
        print(f"fault report: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
