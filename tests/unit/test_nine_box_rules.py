"""The 9-box's rules, pure: grades onto columns, box numbers, the grid's reading order, movement, labels."""

from __future__ import annotations

from datetime import date

import pytest

from contracts.assessment import Grade
from contracts.selection import Potential
from services.selection import rules
from services.selection.rules import Box

LOW, MEDIUM, HIGH = Potential.LOW, Potential.MEDIUM, Potential.HIGH


@pytest.mark.parametrize(
    ("grade", "potential", "number"),
    [
        (Grade.EXCELLENT, HIGH, 9),
        (Grade.COMPETENT, HIGH, 8),
        (Grade.BASICALLY_COMPETENT, HIGH, 7),
        (Grade.EXCELLENT, MEDIUM, 6),
        (Grade.COMPETENT, MEDIUM, 5),
        (Grade.INCOMPETENT, MEDIUM, 4),
        (Grade.EXCELLENT, LOW, 3),
        (Grade.COMPETENT, LOW, 2),
        (Grade.INCOMPETENT, LOW, 1),
    ],
)
def test_a_grade_and_a_potential_make_a_box(grade: Grade, potential: Potential, number: int) -> None:
    assert rules.box_of(grade, potential).number == number


def test_the_grid_reads_from_high_potential_down_and_low_performance_across() -> None:
    assert [box.number for box in rules.grid()] == [7, 8, 9, 4, 5, 6, 1, 2, 3]
    assert len(set(rules.grid())) == 9


@pytest.mark.parametrize(
    ("before", "after", "direction"),
    [
        (Box(MEDIUM, MEDIUM), Box(HIGH, HIGH), "up"),
        (Box(MEDIUM, MEDIUM), Box(MEDIUM, HIGH), "up"),
        (Box(HIGH, HIGH), Box(LOW, MEDIUM), "down"),
        (Box(HIGH, LOW), Box(LOW, HIGH), "across"),
        (Box(LOW, LOW), Box(LOW, LOW), "stayed"),
    ],
)
def test_movement_between_cycles(before: Box, after: Box, direction: str) -> None:
    assert rules.movement(before, after) == direction


@pytest.mark.parametrize(
    ("label", "counts"),
    [
        ("Annual assessment 2026", True),
        ("2026", True),
        ("Talent review 2026", True),
        ("2026年度人才盘点", True),
        ("Talent review 2025", False),
        ("20261", False),
        ("Mid-year", False),
    ],
)
def test_a_rating_counts_for_a_cycle_by_its_name_or_its_year(label: str, counts: bool) -> None:
    assert rules.rating_counts_for(label, "Annual assessment 2026", date(2026, 1, 5)) is counts
