"""fault-report.py says only what the rows measured, and fails on a missing, doubled or bad row."""
import importlib.util
import json
import pathlib
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "fault-report.py"
spec = importlib.util.spec_from_file_location("fault_report", SCRIPT)
fr = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fr)


def row(fault, **kw):
    r = {"fault": fault, "injected": 3, "expected": 10, "verified": 10, "lost": 0,
         "open_uploads": 0, "note": "n"}
    r.update(kw)
    return r


def test_complete_clean_run_passes_and_prints_the_measured_numbers():
    rows = [row(f, verified=10, expected=10, injected=i + 1) for i, f in enumerate(fr.EXPECTED)]
    lines, problems = fr.render(rows, fr.EXPECTED)
    assert problems == []
    assert len(lines) == 2 + len(fr.EXPECTED)
    assert f"| {fr.EXPECTED[1]} | 2 | 10 | 10 | 0 | 0 | n |" in lines


def test_missing_row_fails():
    rows = [row(f) for f in fr.EXPECTED[1:]]
    _, problems = fr.render(rows, fr.EXPECTED)
    assert any("row missing" in p and fr.EXPECTED[0] in p for p in problems)


def test_doubled_row_fails():
    rows = [row(f) for f in fr.EXPECTED] + [row(fr.EXPECTED[0])]
    _, problems = fr.render(rows, fr.EXPECTED)
    assert any("2 times" in p for p in problems)


def test_loss_unverified_open_upload_and_no_injection_fail():
    for bad in (dict(lost=1, verified=9), dict(verified=9), dict(open_uploads=1), dict(injected=0)):
        rows = [row(f) for f in fr.EXPECTED[1:]] + [row(fr.EXPECTED[0], **bad)]
        lines, problems = fr.render(rows, fr.EXPECTED)
        assert problems, bad


def test_cli_exit_codes(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text("\n".join(json.dumps(row(f)) for f in fr.EXPECTED) + "\n")
    ok = subprocess.run([sys.executable, str(SCRIPT), str(p)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    p.write_text("\n".join(json.dumps(row(f)) for f in fr.EXPECTED[:-1]) + "\n")
    bad = subprocess.run([sys.executable, str(SCRIPT), str(p)], capture_output=True, text=True)
    assert bad.returncode == 1 and "row missing" in bad.stderr
