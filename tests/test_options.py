"""pytest conventions: the plugin's options in the ini file (command line first), and the
cache folder (XDG default, `vaccbench cache`)."""

from __future__ import annotations

import json

import pytest
from vaccbench_fake import FakeProject

from pytest_vaccbench.baselines import update_file
from pytest_vaccbench.cache import cache_dir
from pytest_vaccbench.cli import main


@pytest.fixture
def project(pytester: pytest.Pytester) -> FakeProject:
    project = FakeProject(pytester.path, pytester)
    project.plan({"timm-efficientnet_lite0": {"correct": 2}})
    update_file(project.baselines / "efficientnet_lite.yaml", [
        ("timm-efficientnet_lite0", "skimage-photos", "fake/fp32", {"top1": 40.0, "top5": 100.0, "n": 5})])
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\nvaccbench_json = "out/r.json"\n'
                               'vaccbench_limit = "3"\nvaccbench_no_image_cache = true\n')
    return project


def _tests(project: FakeProject) -> dict[str, dict]:
    document = json.loads((project.path / "out" / "r.json").read_text())
    return {t["model"]: t for t in document["tests"] if t.get("n")}


def test_options_from_the_ini_file_and_the_command_line_first(project):
    result = project.run("-k", "efficientnet_lite0")
    assert "Unknown config option" not in result.stdout.str() + result.stderr.str()
    assert _tests(project)["timm-efficientnet_lite0"]["n"] == 3  # vaccbench_limit
    assert not (project.path / "cache" / "images").exists()  # vaccbench_no_image_cache
    project.run("-k", "efficientnet_lite0", "--limit=4", "--vaccbench-json=out/r.json")
    assert _tests(project)["timm-efficientnet_lite0"]["n"] == 4  # the command line wins


def test_a_bad_ini_value_is_a_usage_error_naming_the_file(project, pytester):
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\nvaccbench_limit = "three"\n')
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*pyproject.toml: vaccbench_limit = 'three' is not a valid --limit value*"])


def test_cache_folder_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("VACCBENCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "vaccbench"
    monkeypatch.setenv("VACCBENCH_CACHE", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    assert cache_dir(tmp_path / "opt") == tmp_path / "opt"
    monkeypatch.delenv("VACCBENCH_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "vaccbench"


def test_cache_command_sizes_kinds_and_clears_only_its_own(tmp_path, capsys, monkeypatch):
    root = tmp_path / "cache"
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.npy").write_bytes(b"x" * 2048)
    (root / "predictions" / "f" / "m").mkdir(parents=True)
    (root / "predictions" / "f" / "m" / "p.npz").write_bytes(b"x" * 100)
    (root / "mine.txt").write_text("not written by vaccbench")
    monkeypatch.setenv("VACCBENCH_CACHE", str(root))
    assert main(["cache"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"cache: {root}"
    assert [line.split()[:4] for line in out[1:]] == [
        ["images", "2.0", "KiB", "1"], ["predictions", "100", "B", "1"],
        ["other", "24", "B", "1"], ["total", "2.1", "KiB", "3"]]
    assert main(["cache", "--clear", "images"]) == 0
    assert not (root / "images").exists() and (root / "predictions").exists()
    assert main(["cache", "--clear"]) == 0
    assert "removed predictions" in capsys.readouterr().out
    assert sorted(p.name for p in root.iterdir()) == ["mine.txt"]
    assert main(["cache", "--clear", "nonsense"]) == 2
    assert "no cache kind 'nonsense'" in capsys.readouterr().err


def test_options_reference_is_up_to_date(project_root):
    """docs/options.md is generated from the parsers; regenerate it after changing an option."""
    from pytest_vaccbench import docgen

    committed = (project_root / "docs" / "options.md").read_text()
    assert committed == docgen.render(), \
        "docs/options.md is out of date: run `python -m pytest_vaccbench.docgen` and commit it"
    for needed in ("`--vaccbench-json=PATH` | `vaccbench_json`", "### vaccbench compare",
                   "### vaccbench cache", "| `VACCBENCH_CACHE` |", "| pytest | 4 |"):
        assert needed in committed


def test_statistics_table_is_what_the_gate_computes(project_root):
    """docs/statistics.md's table of n against the detectable drop is generated from gate.py
    (docgen.detectable_table), so it cannot drift from the code."""
    from pytest_vaccbench import docgen

    committed = (project_root / "docs" / "statistics.md").read_text()
    assert docgen.TABLE_START in committed and docgen.TABLE_END in committed
    assert committed == docgen.render_statistics(committed), \
        "docs/statistics.md's table is out of date: run `python -m pytest_vaccbench.docgen`"
    assert "| 650 | 0.154 points | 0.50 | 3.83 |" in committed  # what tests/test_gate_power checks


def test_docgen_check_says_how_to_regenerate(tmp_path, capsys):
    from pytest_vaccbench import docgen

    stale, statistics = tmp_path / "options.md", tmp_path / "statistics.md"
    stale.write_text("# old\n")
    statistics.write_text(f"# text\n{docgen.TABLE_START}\n| old |\n{docgen.TABLE_END}\nmore text\n")
    files = ["--output", str(stale), "--statistics", str(statistics)]
    assert docgen.main(["--check", *files]) == 1
    err = capsys.readouterr().err
    assert f"{stale} is out of date: run `python -m pytest_vaccbench.docgen`" in err
    assert f"{statistics} is out of date" in err
    assert docgen.main(files) == 0
    assert docgen.main(["--check", *files]) == 0
    text = statistics.read_text()
    assert text.startswith("# text\n") and text.endswith("\nmore text\n") and "| old |" not in text
