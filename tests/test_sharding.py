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


# Shard owning (source, org) for 2, 3, 5 and 7 replicas, computed outside the exporter:
# printf '%s\0%s' SOURCE ORG | sha256sum, first 16 hex digits as a big-endian integer, modulo.
# A change of hash, separator or byte order would move orgs between replicas on upgrade.
KNOWN_OWNERS = [
    ("src", "acme", "eb8bbc95bfdc76e7", (1, 1, 1, 4)),
    ("vocdoni-prod", "0x" + "1" * 40, "fbf3d2180239cc54", (0, 1, 0, 0)),
    ("ordo", "lidar", "924d2b27a6f73862", (0, 2, 2, 2)),
    ("src", "0x" + "0" * 39 + "7", "8f29e1f08813c3ac", (0, 1, 1, 6)),
]


@pytest.mark.parametrize(("source", "org", "digest", "owners"), KNOWN_OWNERS)
def test_hash_is_stable(source: str, org: str, digest: str, owners: tuple[int, ...]) -> None:
    assert tuple(int(digest, 16) % n for n in (2, 3, 5, 7)) == owners  # the table is consistent
    for count, owner in zip((2, 3, 5, 7), owners, strict=True):
        assert [i for i in range(count) if Shard(i, count).owns(source, org)] == [owner]
    assert Shard(0, 1).owns(source, org)


@pytest.mark.parametrize(("text", "expected"), [
    ("0/3", Shard(0, 3)), ("2/3", Shard(2, 3)), ("asyncjob-exporter-1/2", Shard(1, 2)),
])
def test_parse_shard(text: str, expected: Shard) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["3/3", "x/3", "1", "1/0", "-1/2"])
def test_parse_shard_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="--shard"):
        parse_shard(text)
