#!/usr/bin/env python3
"""Checks the workspace's declared rust-version against what the build really needs.

    check-rust-version.py

Fails (exit 1) when a locked dependency declares a newer rust-version than the workspace (the
declared one would not build), or when the toolchain running the suite is older than the declared
one. Clippy's incompatible_msrv lint, run by the suite with the declared version, catches standard
library items newer than it in our own code.
"""
import json
import re
import subprocess
import sys


def version(s: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", s)[:3]) + (0,) * (3 - len(re.findall(r"\d+", s)[:3]))


def main() -> int:
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked"],
            check=True, capture_output=True, text=True,
        ).stdout
    )
    members = set(meta["workspace_members"])
    used = {n["id"] for n in meta["resolve"]["nodes"]}
    declared = {p["name"]: p.get("rust_version") for p in meta["packages"] if p["id"] in members}
    if not all(declared.values()):
        print(f"rust-version: not declared by every member: {declared}", file=sys.stderr)
        return 1
    ours = max(version(v) for v in declared.values())
    needs = sorted(
        (version(p["rust_version"]), f"{p['name']} {p['version']}")
        for p in meta["packages"]
        if p["id"] in used and p["id"] not in members and p.get("rust_version")
    )
    top, who = needs[-1]
    rustc = subprocess.run(["rustc", "--version"], check=True, capture_output=True, text=True).stdout
    have = version(rustc.split()[1])
    show = lambda v: ".".join(map(str, v))
    print(f"rust-version {show(ours)}; dependencies need at most {show(top)} ({who}); toolchain {show(have)}")
    bad = False
    if top > ours:
        newer = [w for v, w in needs if v > ours]
        print(f"rust-version {show(ours)} is too old: {', '.join(newer)} need more", file=sys.stderr)
        bad = True
    if have < ours:
        print(f"toolchain {show(have)} is older than rust-version {show(ours)}", file=sys.stderr)
        bad = True
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
