"""The suite's own set-up: conftest and the shared helpers leave torch out of torch-free tests."""

from __future__ import annotations

import sys

import benchmark as bm  # noqa: F401

from helpers import ROOT, error_text, run


def test_conftest_and_helpers_do_not_import_torch():
    code = "import sys; sys.path.insert(0, 'tests'); import conftest, helpers; print('torch' in sys.modules)"
    p = run([sys.executable, "-c", code], cwd=ROOT, timeout=120, check=True)
    assert p.stdout.split() == ["False"]


def test_error_text_follows_causes_and_stops_at_a_loop():
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise ValueError("outer") from inner
    except ValueError as e:
        outer = e
    assert error_text(outer).splitlines() == ["outer", "'inner'"]
    outer.__cause__.__context__ = outer  # what re-raising a found cause does to a chain
    assert error_text(outer).splitlines() == ["outer", "'inner'"]
