"""Split organizations across replicas by a stable hash, like kube-state-metrics shards."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_SHARD = re.compile(r"^(?P<index>.*?)/(?P<count>\d+)$")


@dataclass(frozen=True, slots=True)
class Shard:
    """This replica's shard: it polls the orgs whose hash mod count equals index."""

    index: int
    count: int

    def owns(self, source: str, org: str) -> bool:
        """Return True when this replica polls (source, org)."""
        digest = hashlib.sha256(f"{source}\x00{org}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index

    def as_tuple(self) -> tuple[int, int]:
        """Return (index, count) for the shard_info metric."""
        return (self.index, self.count)


def parse_shard(text: str) -> Shard:
    """Parse INDEX/COUNT; INDEX may be a StatefulSet pod name ending in -N (its ordinal)."""
    match = _SHARD.match(text.strip())
    if not match:
        raise ValueError(f"--shard expects INDEX/COUNT such as 0/3, got {text!r}")
    raw_index, count = match["index"], int(match["count"])
    ordinal = re.fullmatch(r"(?:.+-)?(\d+)", raw_index)
    if ordinal is None:
        raise ValueError(f"--shard index must be a number or end in -N, got {raw_index!r}")
    index = int(ordinal.group(1))
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard needs 0 <= INDEX < COUNT, got {index}/{count}")
    return Shard(index, count)
