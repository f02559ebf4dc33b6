"""Expected calibration error: how far a model's stated confidence is from how often it is right.

Confidences are grouped into equal-width bins over [0, 1]; ECE is the item-weighted mean, over bins, of
|accuracy in the bin - mean confidence in the bin| (Guo et al. 2017). 0 is perfectly calibrated.

Exercise: `pytest tests/stages/curriculum/test_calibration.py`.
"""

from __future__ import annotations

from typing import Sequence

from ...errors import ForgeError


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[float], bins: int = 10) -> float:
    """ECE of `confidences` (each in [0, 1]) against outcomes `correct` (1 right, 0 wrong)."""
    if len(confidences) != len(correct):
        raise ForgeError(f"{len(confidences)} confidences but {len(correct)} outcomes")
    if not confidences:
        return 0.0
    totals = [[0, 0.0, 0.0] for _ in range(bins)]  # count, sum of confidence, sum of correctness
    for conf, ok in zip(confidences, correct):
        conf = min(1.0, max(0.0, float(conf)))
        b = min(bins - 1, int(conf * bins))
        totals[b][0] += 1
        totals[b][1] += conf
        totals[b][2] += float(ok)
    n = len(confidences)
    return sum(count / n * abs(acc / count - conf / count) for count, conf, acc in totals if count)


def reliability(confidences: Sequence[float], correct: Sequence[float], bins: int = 10) -> list[dict]:
    """Per non-empty bin: mean confidence, accuracy and count (the points of a reliability diagram)."""
    rows = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        members = [
            (c, o) for c, o in zip(confidences, correct)
            if lo <= min(1.0, max(0.0, c)) < hi or (b == bins - 1 and min(1.0, max(0.0, c)) == 1.0)
        ]
        if members:
            rows.append({
                "confidence": sum(c for c, _ in members) / len(members),
                "accuracy": sum(o for _, o in members) / len(members),
                "count": len(members),
            })
    return rows
