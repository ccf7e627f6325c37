"""The detectors' documentation runs: every docstring example in ``gateway.detect``, each
detector's example producing a finding of its own alert type, and the package's public surface."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import gateway.detect
from gateway.detect import DETECTORS
from gateway.detect._base import DetectorBase

MODULES = sorted(name for _, name, _ in pkgutil.iter_modules(gateway.detect.__path__,
                                                               f"{gateway.detect.__name__}."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0


@pytest.mark.parametrize("cls", DETECTORS, ids=[c.name for c in DETECTORS])
def test_each_detector_shows_one_input_producing_one_finding(cls: type[DetectorBase]) -> None:
    module = importlib.import_module(cls.__module__)
    assert module.__name__.rsplit(".", 1)[1] == cls.alert_type.value  # named after its type
    examples = [example for test in doctest.DocTestFinder().find(module)
                for example in test.examples]
    assert any(example.want.startswith(f"{cls.alert_type} ") for example in examples)
    assert doctest.testmod(module).failed == 0


def test_the_public_surface_is_what_all_lists() -> None:
    exported = set(gateway.detect.__all__)
    assert {cls.__name__ for cls in DETECTORS} <= exported
    assert {"DETECTORS", "AlertingStage", "Batch", "Detector", "DetectorBase", "Fleet",
            "build_detectors", "engine_from_settings", "extract", "load_detectors"} <= exported
    for name in exported:
        assert getattr(gateway.detect, name) is not None
