"""Sharding: stable hash split and the --shard syntax."""

from __future__ import annotations

import pytest

from exporter.sharding import Shard, parse_shard


def test_every_org_is_owned_by_exactly_one_shard() -> None:
    orgs = [f"0x{i:040x}" for i in range(300)]
    shards = [Shard(i, 3) for i in range(3)]
    owners = [[s.index for s in shards if s.owns("src", o)] for o in orgs]
    assert all(len(o) == 1 for o in owners)
    sizes = [sum(1 for o in owners if o == [i]) for i in range(3)]
    assert min(sizes) > 60  # roughly balanced


def test_hash_is_stable() -> None:
    assert Shard(0, 2).owns("src", "acme") == Shard(0, 2).owns("src", "acme")
    assert Shard(0, 1).owns("anything", "x")


@pytest.mark.parametrize(("text", "expected"), [
    ("0/3", Shard(0, 3)), ("2/3", Shard(2, 3)), ("asyncjob-exporter-1/2", Shard(1, 2)),
])
def test_parse_shard(text: str, expected: Shard) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["3/3", "x/3", "1", "1/0", "-1/2"])
def test_parse_shard_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="--shard"):
        parse_shard(text)
