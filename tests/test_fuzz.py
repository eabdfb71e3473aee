"""Every parser of hostile input refuses only in its documented way: ``edgewatch bench fuzz``
runs a million mutated inputs per parser; here a few thousand, and hypothesis's own."""

import contextlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewatch.agent.cli import main
from edgewatch.export.bench.fuzz import PARSERS, mutate


def test_the_fuzz_bench_finds_no_escape(capsys):
    assert main(["bench", "fuzz", "--inputs", "4000", "--seed", "7", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == set(PARSERS)
    assert {name: r["escapes"] for name, r in result.items()} == dict.fromkeys(PARSERS, 0)
    assert all(r["taken"] + r["refused"] == 4000 for r in result.values())


@pytest.mark.parametrize("name", sorted(PARSERS))
@given(data=st.binary(max_size=3000) | st.builds(bytes, st.from_regex(rb"[\[{\"0-9,:.e-]{0,300}")))
@settings(max_examples=150, deadline=None)
def test_any_bytes_are_taken_or_refused_as_documented(name, data):
    parser = PARSERS[name]
    with contextlib.suppress(*parser.refusal):
        parser.parse(data)


@pytest.mark.parametrize("name", sorted(PARSERS))
@given(seed=st.integers(0, 2**32 - 1))
@settings(max_examples=100, deadline=None)
def test_mutated_seeds_are_taken_or_refused_as_documented(name, seed):
    parser = PARSERS[name]
    with contextlib.suppress(*parser.refusal):
        parser.parse(mutate(np.random.default_rng(seed), parser.seeds))
