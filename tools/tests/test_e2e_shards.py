"""The e2e shards: every file runs in exactly one shard, the loads are balanced."""

from pathlib import Path

from tools.e2e_shards import DEFAULT_WEIGHT, WEIGHTS, deal


def test_every_file_is_dealt_once_and_the_heaviest_go_to_different_shards():
    files = [Path(f"tests/e2e/{name}") for name in [*WEIGHTS, "test_new.py"]]
    groups = deal(files, 2)
    dealt = [p for group in groups for p in group]
    assert sorted(dealt) == sorted(files)
    heaviest = sorted(WEIGHTS, key=WEIGHTS.get, reverse=True)[:2]
    assert {g for g, group in enumerate(groups) for p in group if p.name in heaviest} == {0, 1}
    loads = [sum(WEIGHTS.get(p.name, DEFAULT_WEIGHT) for p in group) for group in groups]
    assert max(loads) - min(loads) <= max(WEIGHTS.values())


def test_one_shard_runs_everything_and_empty_shards_are_dropped():
    files = [Path("tests/e2e/test_a.py"), Path("tests/e2e/test_b.py")]
    assert deal(files, 1) == [sorted(files)]
    assert deal(files, 5) == [[files[0]], [files[1]]]
    assert deal([], 2) == []


def test_every_e2e_file_has_a_measured_weight():
    e2e = Path(__file__).resolve().parents[2] / "tests" / "e2e"
    unweighted = sorted(p.name for p in e2e.glob("test_*.py") if p.name not in WEIGHTS)
    assert not unweighted, f"add them to tools/e2e_shards.py WEIGHTS: {unweighted}"
