"""Hostile and unusual READMEs for `vaccbench import-readme`: what it writes always loads,
its time grows linearly with the README, and the zoo's other table styles are read (each
row a model, or a warning that names the row)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import pytest

from pytest_vaccbench.baselines import load_family
from pytest_vaccbench.errors import VaccbenchError
from pytest_vaccbench.importer import import_readme, map_models, parse_readme


def no_library(library: str, arch: str) -> None:
    """The architecture check without importing timm (fast tests): taken on trust."""
    return None


HEAD = """# Fam
Fam: A paper title

```
transforms.Resize(256),
transforms.CenterCrop(224),
transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
```

| model | source | top1 | top5 | input size |
|---|---|---|---|---|
"""


def test_a_transform_call_over_two_lines_is_a_one_line_comment(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(HEAD.replace("transforms.Normalize(mean", "transforms.Normalize(\n    mean")
                      + "| MobileNetV2 | ppcls | 72.1 | 90.6 | 224 |\n")
    out = tmp_path / "fam.yaml"
    import_readme(readme, out, check=no_library)
    family = load_family(out)  # before, the comment's second line broke the YAML
    assert family.preprocess.mean == (0.485, 0.456, 0.406)
    line = next(x for x in out.read_text().splitlines() if x.strip().startswith("mean:"))
    assert line.endswith("# Normalize( mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]) (line 7)")


def test_a_baseline_that_would_not_load_replaces_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every written baseline is read back and schema-checked first: here a comment that
    spans lines (the writer's old fault, put back on purpose)."""
    from pytest_vaccbench.importer import writing

    readme = tmp_path / "README.md"
    readme.write_text(HEAD + "| MobileNetV2 | ppcls | 72.1 | 90.6 | 224 |\n")
    out = tmp_path / "fam.yaml"
    out.write_text("the previous file\n")
    monkeypatch.setattr(writing, "one_line", lambda text: f"{text}\n  broken: [")
    with pytest.raises(VaccbenchError, match="the baseline this import made does not load .*nothing "
                                             "was written"):
        import_readme(readme, tmp_path / "new.yaml", check=no_library)
    assert not (tmp_path / "new.yaml").exists() and out.read_text() == "the previous file\n"


def growth(work: Callable[[int], object], n: int) -> float:
    """How much more CPU time `work` takes on 4n than on n (best of three each; CPU time, not
    wall time, so that other jobs on the machine count less): about 4 when it is linear, 16
    when quadratic."""
    def best(size: int) -> float:
        times = []
        for _ in range(3):
            start = time.process_time()
            work(size)
            times.append(time.process_time() - start)
        return min(times)
    return best(4 * n) / best(n)


def rows(n: int) -> str:
    return HEAD + "".join(f"| m{i} | ppcls | 70.{i % 10} | 90.1 | 224 |\n" for i in range(n))


@pytest.mark.slow
def test_reading_a_readme_takes_time_linear_in_its_rows() -> None:
    """20,000 rows took 142 s: each row's key was looked up by a scan of those before it."""
    texts = {n: rows(n) for n in (1500, 6000)}
    ratio = growth(lambda n: map_models(parse_readme(texts[n]), no_library), 1500)
    assert ratio < 8, ratio


def test_a_new_baseline_is_filled_without_copying_its_mapping_per_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each new model was inserted into the mapping, which copies it: quadratic in the rows
    (a 20,000-row README). Appended at the end, they are not."""
    from ruamel.yaml.comments import CommentedMap

    from pytest_vaccbench.importer.writing import ImportResult, _skeleton, merge_baseline

    inserts = []
    original = CommentedMap.insert
    monkeypatch.setattr(CommentedMap, "insert", lambda self, *a, **k: (inserts.append(a[1]), original(self, *a, **k)))
    readme = parse_readme(rows(200))
    models, _ = map_models(readme, no_library)
    data = _skeleton(readme, "fam")
    merge_baseline(data, "fam", readme, models, ImportResult(Path("fam.yaml"), "fam", True,
                                                            [m.key for m in models]))
    assert len(data["models"]) == 200 and list(data["models"])[:2] == ["ppcls-m0", "ppcls-m1"]
    assert len([key for key in inserts if key.startswith("ppcls-")]) <= 1, inserts  # not per model


@pytest.mark.parametrize("cell", ["[" * 32000, "<a" * 16000, "[x](" * 8000, "transforms.Resize(" * 1000])
def test_a_cell_of_brackets_takes_time_linear_in_its_length(cell: str) -> None:
    """A cell of 150,000 `[` took 72 s: the link pattern scanned to the line's end from each
    bracket, and a transform call's arguments were searched to the end of the text."""
    texts = {n: HEAD + f"| {cell[:len(cell) * n // 4]} | ppcls | 70 | 90 | 224 |\n" for n in (1, 4)}
    assert growth(lambda n: parse_readme(texts[n]), 1) < 8


# -- the zoo's other tables ---------------------------------------------------------------------

def parsed(text: str) -> tuple[list[tuple[str, tuple[str, ...], dict[str, str]]], list[str]]:
    readme = parse_readme(text)
    return ([(r.name, r.sources, {k: str(v) for k, v in r.cells.items()}) for r in readme.rows],
            [p.message for p in readme.problems])


def test_acc_at_1_headings_with_a_percent() -> None:
    found, _ = parsed("# R\nR: paper\n\n| model | source | Acc@1 (%) | Acc@5 (%) | size |\n"
                      "|---|---|---|---|---|\n| resnet18 | torchvision | 69.758 | 89.078 | 224 |\n")
    assert found == [("resnet18", ("torchvision",), {"top1": "69.758", "top5": "89.078",
                                                      "input_size": "224"})]


def test_yolov5_table_html_headings_links_bold_cells_and_a_source_named_in_the_text() -> None:
    """The ultralytics README: HTML in the headings, names in links, bold cells, columns this
    importer does not know, and the source only in a link of the text."""
    found, problems = parsed(
        "# YOLOv5-cls\nYOLOv5: classification, see https://github.com/ultralytics/yolov5\n\n"
        "| Model | size<br><sup>(pixels) | acc<br><sup>top1 | acc<br><sup>top5 | Training<br><sup>90 epochs"
        "<br><sup>4xA100 (hours) | Speed<br><sup>ONNX CPU<br><sup>(ms) | params<br><sup>(M) | FLOPs<br><sup>@224 (B) |\n"
        "|---|---|---|---|---|---|---|---|\n"
        "| [YOLOv5n-cls](https://github.com/ultralytics/yolov5/releases/download/v7.0/yolov5n-cls.pt) "
        "| 224 | 64.6 | 85.4 | 7:59 | **3.3** | 2.5 | 0.5 |\n"
        "| [ResNet50](https://github.com/ultralytics/yolov5/releases/download/v7.0/resnet50.pt) "
        "| 224 | **78.9** | 94.4 | 9:26 | **9.5** | 25.6 | 4.1 |\n")
    assert found == [
        ("YOLOv5n-cls", ("ultralytics",), {"input_size": "224", "top1": "64.6", "top5": "85.4",
                                           "params": "2.5", "flops": "0.5"}),
        ("ResNet50", ("ultralytics",), {"input_size": "224", "top1": "78.9", "top5": "94.4",
                                        "params": "25.6", "flops": "4.1"})]
    assert any(p.startswith("table column(s) ['Training 90 epochs 4xA100 (hours)', 'Speed ONNX CPU "
                            "(ms)'] unknown") for p in problems), problems
    assert "no source column: every row's source is ultralytics (named at line 2)" in problems


@pytest.mark.parametrize("text", ["## Code Source\n\n- [timm](https://example.org/a/fork)\n",
                                  "Code Source: timm\n", "源码：timm\n"])
def test_a_source_named_in_words_under_a_code_source_label(text: str) -> None:
    found, problems = parsed(f"# R\nR: paper\n\n{text}\n| Model | Acc@1 | Acc@5 | input size |\n"
                             "|---|---|---|---|\n| resnet18 | 69.7 | 89.0 | 224 |\n")
    assert found == [("resnet18", ("timm",), {"top1": "69.7", "top5": "89.0", "input_size": "224"})]


def test_html_headings_and_bold_cells_in_a_table_with_a_source_column() -> None:
    found, _ = parsed("# X\nX: paper\n\n| Model | source | Acc<br><sup>top1 | Acc<br><sup>top5 | "
                      "Size<br><sup>(pixels) |\n|---|---|---|---|---|\n| **resnet18** | timm | **69.7** | 89.0 | 224 |\n")
    assert found == [("resnet18", ("timm",), {"top1": "69.7", "top5": "89.0", "input_size": "224"})]


def test_every_row_becomes_a_model_or_a_warning_naming_it(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(HEAD + "| MobileNetV2 | ppcls | 72.1 | 90.6 | 224 |\n| | ppcls | 70 | 90 | 224 |\n"
                      "| MobileNetV2_x0_5 | ppcls | 65.0 | 101 | 224 |\n")
    result = import_readme(readme, tmp_path / "fam.yaml", check=no_library)
    messages = [p.format(readme) for p in result.problems]
    assert result.models == ["ppcls-MobileNetV2", "ppcls-MobileNetV2_x0_5"]
    assert f"{readme}:13: warning: table row without a model name: skipped ( | ppcls | 70 | 90 | 224)" in messages
    assert f"{readme}:14: warning: ppcls MobileNetV2_x0_5: top5 101 is not a percentage (0-100); left null" in messages
