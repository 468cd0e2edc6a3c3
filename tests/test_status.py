"""`raydistill status` and `raydistill --version`: what a run has done, read from its files."""

import re

import pytest

from raydistill import __version__
from raydistill.cli import main
from raydistill.config import STAGE_NAMES, RunConfig, from_dict
from raydistill.runs import RunDir


def test_status_of_a_finished_run_lists_every_stage_with_its_time_and_counts(
        small_quickstart, capsys):
    assert main(["status", "--run", small_quickstart.path]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"run {small_quickstart.path}\n")
    for name in STAGE_NAMES:
        assert re.search(rf"^  {name} +done in [\d.]+ s|^  {name} +done in \d+ min", printed,
                         re.M), name
    assert re.search(r"^  ingest +done .*: 12 videos, 2 classes, 0 rejects$", printed, re.M)
    assert re.search(r"^  generate +done .*: 6 videos, 3 per class$", printed, re.M)
    assert printed.rstrip().endswith("every stage is done")


def test_status_of_a_run_in_progress_says_what_is_left_and_who_holds_it(tmp_path, capsys):
    run = RunDir(str(tmp_path / "run"))
    run.save_config(from_dict(RunConfig, {"run_dir": run.url}))
    run.mark_done("ingest", {"videos": 4, "classes": 2, "rejects": 0, "wall_seconds": 3.5},
                  {})
    with run.lease():
        assert main(["status", "--run", run.url]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^  ingest +done in 3.5 s .*: 4 videos, 2 classes, 0 rejects$", printed,
                     re.M)
    assert re.search(r"^  decode +not done$", printed, re.M)
    assert f"left: {', '.join(STAGE_NAMES[1:])}" in printed
    assert "in use by pid" in printed


def test_status_of_a_folder_without_a_run_exits_2_naming_it(tmp_path, capsys):
    assert main(["status", "--run", str(tmp_path / "none")]) == 2
    assert "--run" in capsys.readouterr().err


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.strip() == f"raydistill {__version__}"
