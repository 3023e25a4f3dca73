"""The reliability suite's short version (`make chaos` runs it whole): one run of
`benchmarks.chaos` with `SHORT` sizes, then one test per figure group and per bad-input case,
so a check that waits for another branch is marked on its own.

The run prints its table (as README "Reliability" shows it). ASYNCIMG_KILL_SEED replays a
run's kill points.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from benchmarks.chaos import SHORT, run
from benchmarks.chaos.badinput import CASES
from benchmarks.chaos.common import Report, render
from benchmarks.chaos.kills import SEED

OPEN = "open: "
# Input figures summarise the cases, which have their own tests below.
CASE_SUMMARIES = {
    "cases failing a check",
    "wrong exit codes",
    "tracebacks or not one line",
    "other frames touched",
    "things lost",
}
BY_NAME = {case.name: case for case in CASES}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Report]:
    yield run(tmp_path_factory.mktemp("chaos"), SHORT, SEED)


def test_table(report: Report, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\n" + render(report, f"chaos, short version (seed {SEED})"))
    assert report.figures


@pytest.mark.parametrize("part", ["kills", "crowd", "faults", "input"])
def test_figures(report: Report, part: str) -> None:
    missed = [
        f"{f.name}: {f.value} (wanted {f.wanted})"
        for f in report.failures
        if f.part == part
        if not (part == "input" and f.name in CASE_SUMMARIES)
    ]
    assert not missed, (missed, [p for p in report.problems if p.startswith(part)])
    assert any(f.part == part for f in report.figures)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            name,
            marks=[pytest.mark.xfail(strict=False, reason=OPEN + str(BY_NAME[name].needs))]
            if BY_NAME[name].needs
            else [],
        )
        for name in SHORT.input_cases
    ],
)
def test_bad_input(report: Report, name: str) -> None:
    (result,) = [c for c in report.cases if c.name == name]
    assert result.ok, (result.what, result.problems, result.first_line)


def test_no_secret_anywhere(report: Report) -> None:
    """Every part searched its outputs and files for the secret key: none found it."""
    searched = [f for f in report.figures if "secret" in f.name]
    assert {f.part for f in searched} == {"kills", "crowd", "faults", "input"}
    assert not [f for f in searched if f.value], searched
