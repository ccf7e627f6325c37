"""The ingest steps are sized by time (gateway.ingest.pacing): costly messages, short steps."""

from __future__ import annotations

from gateway.ingest.pacing import StepPacer


def test_costly_messages_shrink_the_step_at_once() -> None:
    pacer = StepPacer(budget_s=0.005, largest=500, smallest=16)
    pacer.took(500, 0.5)  # 1 ms a message
    assert pacer.size == 16  # never below the smallest step, however slow


def test_cheap_messages_grow_it_back_by_doubling_up_to_the_largest() -> None:
    pacer = StepPacer(budget_s=0.005, largest=500, smallest=16)
    pacer.took(500, 0.5)
    sizes = []
    for _ in range(8):
        pacer.took(pacer.size, pacer.size * 2e-6)  # 2 us a message
        sizes.append(pacer.size)
    assert sizes == [32, 64, 128, 256, 500, 500, 500, 500]


def test_an_untimed_or_empty_step_changes_nothing_harmful() -> None:
    pacer = StepPacer(budget_s=0.005, largest=500, smallest=16)
    pacer.took(0, 1.0)
    assert pacer.size == 500
    pacer.took(100, 0.0)  # a clock that did not move: as cheap as can be
    assert pacer.size == 500
