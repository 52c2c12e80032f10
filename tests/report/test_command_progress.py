"""``visplay report`` and ``visplay export`` say how far they are (issue 27): a bar of parts done / total on stderr
(a plain line per part, per tenth past ten, off a terminal), none under -q; ``-v`` adds a line per part (and per engine
phase and step in a run), ``-vv`` the hook calls too."""

from __future__ import annotations

import logging

import pytest
from support.eval import build_run

from visplay.cli import main
from visplay.loop.progress import Parts
from visplay.report.build import REPORT_PARTS


@pytest.fixture
def run_db(tmp_path):
    return build_run(tmp_path / "run", iterations=2)


def test_parts_print_a_plain_line_per_part_and_nothing_when_quiet(capsys):
    parts = Parts("report", 3, plain=True)
    for name in ("read", "plots", "files"):
        with parts.part(name):
            pass
    parts.close()
    err = capsys.readouterr().err.splitlines()
    assert [line.split(" part ")[0] for line in err] == ["report: read: 1/3", "report: plots: 2/3",
                                                         "report: files: 3/3"]
    assert err[-1].split(" part ")[1].startswith("(100%)")
    quiet = Parts("report", 3, quiet=True)
    with quiet.part("read"):
        pass
    quiet.close()
    assert capsys.readouterr().err == ""


def test_report_counts_its_parts_on_stderr_and_is_quiet_with_q(run_db, capsys):
    assert main(["report", str(run_db.parent)]) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("report: ")]
    total = len(REPORT_PARTS)
    assert [line.split(" part ")[0].rsplit(" ", 1)[1] for line in lines] == [f"{k}/{total}"
                                                                            for k in range(1, total + 1)]
    assert lines[0].startswith(f"report: {REPORT_PARTS[0]}: 1/{total}")
    assert "report: " in captured.out  # the result line stays on stdout
    assert main(["report", str(run_db.parent), "-q"]) == 0
    quiet = capsys.readouterr()
    assert quiet.err == "" and quiet.out == captured.out  # the same summary, no progress


def test_export_counts_tables_and_is_quiet_with_q(run_db, tmp_path, capsys):
    assert main(["export", str(run_db), "--format", "csv", "--tables", "metrics,labels", "--out",
                 str(tmp_path / "e")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line.split(" part ")[0] for line in err] == ["export: check the run log's arrays: 1/3",
                                                         "export: metrics: 2/3", "export: labels: 3/3"]
    assert main(["export", str(run_db), "-q", "--format", "csv", "--tables", "metrics", "--out",
                 str(tmp_path / "f")]) == 0
    assert capsys.readouterr().err == ""


def test_v_logs_a_line_per_part_and_no_hook_calls(run_db, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        assert main(["report", str(run_db.parent), "-q", "-v", "--out", str(tmp_path / "r")]) == 0
    infos = [r.getMessage() for r in caplog.records if r.name == "visplay.progress"]
    assert infos[0] == f"report: {REPORT_PARTS[0]} (1/{len(REPORT_PARTS)})" and len(infos) == len(REPORT_PARTS)
    assert not [r for r in caplog.records if r.name == "visplay.hooks"]  # hook calls are -vv's


def test_the_report_at_a_runs_end_counts_its_parts_too(run_db, capsys):
    from visplay.loop.engine import _write_report
    from visplay.session import PluginSession

    assert _write_report(run_db.parent, PluginSession(), quiet=False).endswith("index.html")
    err = capsys.readouterr().err.splitlines()
    assert [line.split(" part ")[0].rsplit(" ", 1)[1] for line in err if line.startswith("report: ")] == [
        f"{k}/{len(REPORT_PARTS)}" for k in range(1, len(REPORT_PARTS) + 1)]
    _write_report(run_db.parent, PluginSession(), quiet=True)
    assert capsys.readouterr().err == ""
