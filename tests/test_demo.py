"""`ao demo` itself, as a user runs it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .helpers import run_ao

pytestmark = pytest.mark.timeout(200)


def test_demo_runs_the_whole_loop(tmp_path: Path) -> None:
    r = run_ao("demo", timeout=180)
    assert r.code == 0, r.out + r.err
    out = r.out
    rows = dict(re.findall(r"^\s+([A-Z]+-\d)\s+\S+\s+(\S+)\s+fix rounds", out, re.M))
    assert rows == {"CORE-1": "cleaned", "CORE-2": "cleaned", "DOCS-1": "cleaned",
                    "CLI-1": "cleaned", "REL-1": "cleaned"}
    fix = dict(re.findall(r"^\s+([A-Z]+-\d)\s+\S+\s+\S+\s+fix rounds (\d)", out, re.M))
    assert fix == {"CORE-1": "0", "CORE-2": "1", "DOCS-1": "0", "CLI-1": "0", "REL-1": "0"}
    rebases = [int(n) for n in re.findall(r"rebases (\d)", out)]
    assert sum(rebases) == 1  # the two parallel tasks conflict once; the second rebases
    assert "review rounds 1" in out
    assert "5/5 tasks merged" in out and "0 sessions left running" in out
    for story in ("▶ starting CORE-2, DOCS-1", "CI failed (fix round 1 of 3)",
                  "a reviewer agent reads DOCS-1's PR (round 1)",
                  "reviewer on DOCS-1: request changes", "reviewer on DOCS-1: approve",
                  "conflicts with main", "REL-1: green, waits for a human's approval",
                  "REL-1: approved by the demo's human", "its merge gate passed, merged",
                  "cleaned up", "■ plan complete"):
        assert story in out, story
    # the board's and ls's view of the same run
    ls = run_ao("session", "ls", "--all", "-p", "demo")
    assert ls.code == 0 and ls.out.count("cleaned") == 5
    # the run seen whole: each task's line on one clock, CI failures, the critical path
    rep = run_ao("report", "-p", "demo", env={"COLUMNS": "100"})
    assert rep.code == 0, rep.err
    assert "5 of 5 tasks merged" in rep.out, rep.out
    lines = {ln.split()[0].lstrip(">"): ln for ln in rep.out.splitlines()
             if re.match(r"^[> ][A-Z]+-\d ", ln)}
    assert set(lines) == {"CORE-1", "CORE-2", "DOCS-1", "CLI-1", "REL-1"}, rep.out
    assert all("*" in ln for ln in lines.values()) and "x" in lines["CORE-2"].split("|")[1]
    assert lines["REL-1"].startswith(">") and "-> REL-1" in rep.out  # it merges last
    data = json.loads(run_ao("report", "-p", "demo", "--json").out)
    assert data["merged"] == 5 and data["critical_path"][-1] == "REL-1"
    # the figures: the makespan against the critical path's own work, merges per hour
    assert data["makespan_over_bound"] >= 1.0 and data["merges_per_hour"] > 0, data
    assert data["fix_rounds"] == 1 and data["person_needed"] >= 1, data
    assert run_ao("report", "-p", "nope").code == 2
    # the picture: a PNG, and a page that holds it with the figures
    out = tmp_path / "run"
    out.mkdir()
    pic = run_ao("report", "-p", "demo", "--png", str(out / "run.png"), "--html",
                 str(out / "run.html"))
    assert pic.code == 0, pic.err
    png = (out / "run.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
    page = (out / "run.html").read_text()
    assert "5 of 5 tasks merged" in page and "data:image/png;base64," in page
    assert "<script" not in page and "merges per hour" in page and "▶ REL-1" in page
    bad = run_ao("report", "-p", "demo", "--png", str(out / "missing" / "x.png"))
    assert bad.code == 2 and "is not a folder" in bad.err, bad.err
    # the demo's project is registered: every command sees it, from anywhere
    for argv in (["stats", "-p", "demo", "--json"], ["status"]):
        seen = run_ao(*argv, cwd=tmp_path)
        assert seen.code == 0 and "demo" in seen.out, (argv, seen.out, seen.err)
    # a second run starts from nothing: its report is its own run's, not both mixed
    again = run_ao("demo", timeout=180)
    assert again.code == 0, again.out + again.err
    second = json.loads(run_ao("report", "-p", "demo", "--json").out)
    assert (second["merged"], second["fix_rounds"]) == (5, 1), second
    assert all(t["queued_at"] <= t["started"] for t in second["tasks"]), second["tasks"]
