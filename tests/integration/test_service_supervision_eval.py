"""Issue #14's acceptance, scaled to the suite: simulated beds of every profile with plans and
service anomalies of every kind injected (checked in and nobody came, left early, no
check-out, no recording, outside the window, no plan, one caregiver in two homes, a planned
visit that never happened, a substitute caregiver in the planned one's stead; a fifth of the
visits through the app), judged by the gateway's detector on the simulated clock
(homecare/service_eval.py). Every anomaly must be flagged with the reason injected (a
substitute's visit `unplanned`, its plan `missed`), at most 2 % of the honest visits flagged,
and a caregiver who never came to an elderly couple flagged. The full-size run (50 beds x 14
days x 3 seeds) is ``python -m homecare.service_eval``; its figures are in the README."""

from __future__ import annotations

from pathlib import Path

import pytest

from homecare.service_eval import evaluate_service
from simulators.profiles import PROFILES

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_every_injected_anomaly_is_flagged_with_its_reason_and_honest_visits_are_not(
        tmp_path: Path) -> None:
    score = evaluate_service(tmp_path, beds=22, days=6, seed=7, profiles=tuple(PROFILES),
                             anomaly_share=0.3)
    report = "\n".join(score.report())
    assert all(s.injected for k, s in score.reasons.items() if k != "overlap"), report
    assert score.all_right, report
    assert score.honest > 50, report
    assert score.honest_flagged_share <= 0.02, report
    assert score.unmatched_findings == 0, report
    for tally in (score.couple_ghosts, score.couple_missed, score.app_visits):
        assert tally.injected, report
        assert tally.right == tally.injected, report
