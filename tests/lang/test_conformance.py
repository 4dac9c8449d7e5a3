"""The conformance suite: every program of lang_programs.py on SmolLM2 and a tiny model (in-process Engine)
and on a real server (RuntimeEndpoint over HTTP; over SmolLM2 too with -m slow)."""

from __future__ import annotations

import pytest
from lang_programs import ALL_CHECKS


@pytest.mark.parametrize("check", ALL_CHECKS, ids=[c.__name__.removeprefix("check_") for c in ALL_CHECKS])
def test_program(check, backend, request):
    trained = request.node.callspec.params["backend"] in ("smollm", "http_smollm")
    check(backend, trained)
