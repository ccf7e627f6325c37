"""Pre-generated load: realistic, deterministic, decodable."""

from __future__ import annotations

from collections import Counter

from devices import Codec, Message
from simulators.load import pregenerate


def test_pregenerate_is_deterministic_and_decodes() -> None:
    first = pregenerate(20, 3_000, seed=3)
    assert first == pregenerate(20, 3_000, seed=3)
    assert first != pregenerate(20, 3_000, seed=4)
    assert len(first) == 3_000
    codec = Codec()
    decoded = [codec.decode(topic, payload) for topic, payload in first]
    assert all(isinstance(m, Message) for m in decoded)
    kinds = Counter(m.address.kind.value for m in decoded if isinstance(m, Message))
    assert {"infrared", "audio", "fall", "button"} <= set(kinds)
    assert len({m.address.bed for m in decoded if isinstance(m, Message)}) == 20
