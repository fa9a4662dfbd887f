"""The fuzzed corpus is what the fuzz test and benchmark say they upload: deterministic in
its seed, each case mutated from one real recording, every mutation used."""

from __future__ import annotations

from collections import Counter

from tests.fuzz_audio import MUTATIONS, fuzz_corpus, recordings


def test_a_seed_gives_the_same_corpus_and_a_longer_one_extends_it() -> None:
    short = list(fuzz_corpus(40, seed=3))
    assert list(fuzz_corpus(40, seed=3)) == short
    assert list(fuzz_corpus(120, seed=3))[:40] == short
    other = list(fuzz_corpus(40, seed=4))
    assert sum(a.data != b.data for a, b in zip(short, other, strict=True)) >= 38


def test_cases_are_mutated_recordings_with_every_mutation_used() -> None:
    sources = recordings()
    cases = list(fuzz_corpus(300, seed=0))
    assert len({case.name for case in cases}) == len(cases)
    assert {case.filename for case in cases} == set(sources)
    first_steps = Counter(case.name.split("-")[1].split("+")[0] for case in cases)
    assert first_steps == {kind: 50 for kind in MUTATIONS}
    changed = [case.data != sources[case.filename] for case in cases]
    assert sum(changed) >= 0.95 * len(cases)
    for case in cases:
        steps = case.name.split("-")[1].split("+")
        if steps == ["truncate"]:
            assert sources[case.filename].startswith(case.data)
        if steps[-1] == "splice":
            donor = case.mutation.rsplit("bytes of ", 1)[1].split(" ", 1)[0]
            assert donor != case.filename and case.data[:4] == sources[donor][:4]
