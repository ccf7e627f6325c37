from gateway.ingest.dedup import Deduplicator, DedupStats, Verdict

DEV = ("site-01", "bed-0001", "fs-0001")


def test_same_seq_and_content_is_a_duplicate() -> None:
    d = Deduplicator(window=8)
    assert d.check(DEV, 1, 1000, 11) is Verdict.NEW
    assert d.check(DEV, 1, 1000, 11) is Verdict.DUPLICATE
    assert d.stats.duplicates == 1


def test_same_seq_other_content_is_kept() -> None:
    """A last-will status reuses the seq fixed at connect time; it must not vanish."""
    d = Deduplicator(window=8)
    d.check(DEV, 5, 5000, 1)
    d.check(DEV, 6, 6000, 2)
    assert d.check(DEV, 5, 4000, 99) is Verdict.LATE


def test_reordered_messages_are_late_not_lost_and_gaps_are_counted() -> None:
    d = Deduplicator(window=8)
    d.check(DEV, 1, 1000, 1)
    d.check(DEV, 4, 4000, 4)
    assert d.stats.gaps == 2
    assert d.check(DEV, 2, 2000, 2) is Verdict.LATE
    assert d.stats.gaps == 1
    assert d.check(DEV, 2, 2000, 2) is Verdict.DUPLICATE
    assert d.device_stats(DEV) == DedupStats(duplicates=1, late=1, gaps=1, resets=0)
    assert d.device_stats(("site-01", "bed-0002", "x")) is None


def test_counter_restart_is_recognised_by_the_clock_moving_on() -> None:
    d = Deduplicator(window=8)
    for seq in range(100, 110):
        d.check(DEV, seq, seq * 1000, seq)
    assert d.check(DEV, 0, 200_000, 7) is Verdict.NEW
    assert d.stats.resets == 1
    assert d.check(DEV, 1, 201_000, 8) is Verdict.NEW


def test_memory_is_bounded_per_device_and_in_devices() -> None:
    d = Deduplicator(window=4, max_devices=3)
    for seq in range(100):
        d.check(DEV, seq, seq, seq)
    assert len(d._devices[DEV].seen) == 4
    for i in range(10):
        d.check(("s", "b", f"d{i}"), 1, 1, 1)
    assert len(d._devices) == 3


def test_fingerprints_are_bounded_over_all_devices() -> None:
    """A flood of made-up devices each sending many seq held ``window`` fingerprints apiece
    (issue 17): now ``max_fingerprints`` in all, the devices seen first forgotten first, never
    the one being checked; the count stays exact through late messages and counter resets."""
    d = Deduplicator(window=64, max_devices=1_000, max_fingerprints=100)
    for i in range(50):
        for seq in range(1, 11):
            d.check(("s", "b", f"d{i}"), seq, seq, seq)
        assert d.fingerprints <= 100
        assert d.fingerprints == sum(len(w.seen) for w in d._devices.values())
    assert 0 < len(d) <= 10
    assert d.check(("s", "b", "d49"), 10, 10, 10) is Verdict.DUPLICATE  # the newest kept
    mine = ("s", "b", "mine")
    for seq in range(1, 200):
        assert d.check(mine, seq, seq, seq) is Verdict.NEW
        assert d.fingerprints <= 100
    assert len(d._devices[mine].seen) == 64
    assert d.check(mine, 150, 150, 150) is Verdict.DUPLICATE
    assert d.check(mine, 1, 10_000, 7) is Verdict.NEW  # a counter reset
    assert d.check(mine, 3, 10_001, 8) is Verdict.NEW
    assert d.check(mine, 2, 10_001, 9) is Verdict.LATE  # a gap filled late
    assert d.fingerprints == sum(len(w.seen) for w in d._devices.values())
