"""Expected calibration error against hand-computed values, and reliability bins."""

import pytest

from agent_forge.errors import ForgeError
from agent_forge.stages.curriculum.calibration import expected_calibration_error, reliability


def test_ece_hand_computed():
    # bin [0.9,1): conf 0.9 x2, one right -> |0.5-0.9| = 0.4, weight 2/4; bin [0.2,0.3): conf 0.2 x2, both wrong -> 0.2
    ece = expected_calibration_error([0.9, 0.9, 0.2, 0.2], [1, 0, 0, 0], bins=10)
    assert ece == pytest.approx(0.5 * 0.4 + 0.5 * 0.2)


def test_perfect_calibration_is_zero_and_overconfidence_is_not():
    assert expected_calibration_error([1.0, 1.0, 0.0], [1, 1, 0]) == pytest.approx(0.0)
    assert expected_calibration_error([0.99] * 10, [1] * 5 + [0] * 5) == pytest.approx(0.49)


def test_reliability_rows_and_errors():
    rows = reliability([0.05, 0.95, 1.0], [0, 1, 1], bins=10)
    assert [r["count"] for r in rows] == [1, 2]
    assert rows[1]["accuracy"] == 1.0
    with pytest.raises(ForgeError):
        expected_calibration_error([0.5], [1, 0])
