"""Encode the job families with each org's sample lines reused while its snapshot is unchanged.

With thousands of orgs every poll republishes, and re-encoding every org's ~70 samples in both
formats cost ~1 s a render at 1,000 orgs (~10 s at 10,000), holding the GIL away from the
polls. An org's snapshot and health are immutable objects replaced on each of its polls, so
its encoded lines are cached under their identity; rows that depend on the render time (ages)
are re-encoded every render, and only for the orgs that have such rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client.exposition import generate_latest as generate_text
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as _om
from prometheus_client.samples import Exemplar, Sample
from prometheus_client.utils import floatToGoString

from exporter.collector import JobsCollector
from exporter.exposition import Family, Row, build_family, new_family
from exporter.rows import AGING, SCOPES
from exporter.state.snapshot import ExporterSnapshot, Histogram, OrgHealth, OrgSnapshot

_generate_om: Callable[[object], bytes] = _om.generate_latest
# The library's own exemplar and float formats, so both encodings agree to the byte.
_exemplar: Callable[[Metric, Sample, Exemplar], str] = _om._compose_exemplar_string
_float_to_go: Callable[[float], str] = floatToGoString
_EOF = b"# EOF\n"
Key = tuple[str, str]


class _Metrics:
    """A collector-shaped list of families for the library's encoders."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self._metrics = list(metrics)

    def collect(self) -> list[Metric]:
        """Return the families."""
        return self._metrics


def _escape_value(value: str) -> str:
    """Escape a label value as both formats do (backslash, newline, double quote)."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


# Escaped label values: the same few (sources, orgs, job types, statuses) fill most lines.
_ESCAPED: dict[str, str] = {}
_ESCAPED_MAX = 100_000  # job ids churn: start over rather than grow for ever


def _escape_new(value: str) -> str:
    """Escape a value not in _ESCAPED yet, and remember it."""
    if len(_ESCAPED) >= _ESCAPED_MAX:
        _ESCAPED.clear()
    escaped = _ESCAPED[value] = _escape_value(value)
    return escaped


def _fast_body(metric: Metric) -> tuple[bytes, bytes] | None:
    """Encode a family's sample lines like the library, without its per-character checks.

    The library validates and escapes every metric and label name character by character (a
    third of a render); ours are fixed valid names. None for a sample this does not cover
    (timestamps, native histograms, OpenMetrics-only suffixes): the library encodes those.
    Without exemplars both formats share one bytes object (half the memory at 10,000 orgs).
    """
    text: list[str] = []
    om: list[str] = []
    known = _ESCAPED.get
    for s in metric.samples:
        if s.timestamp is not None or s.native_histogram is not None \
                or s.name.endswith(("_created", "_gsum", "_gcount")):
            return None
        labels = ",".join([f'{k}="{known(v) or _escape_new(v)}"'
                           for k, v in sorted(s.labels.items())])
        line = f"{s.name}{{{labels}}} " if labels else f"{s.name} "
        line += _float_to_go(s.value)
        text.append(line + "\n")
        if s.exemplar:
            line += _exemplar(metric, s, s.exemplar)
        om.append(line + "\n")
    encoded = "".join(text).encode()
    return encoded, encoded if om == text else "".join(om).encode()


def _sorted_pairs(labels: tuple[str, ...]) -> list[tuple[str, int]]:
    """Return (label name, index in the row) by name: both formats print labels sorted."""
    return sorted((name, i) for i, name in enumerate(labels))


class _Plain:
    """Encode a gauge or counter family's rows straight to lines: no library objects.

    Both formats print these samples identically (name_total for counters, labels sorted by
    name, Go float format), so one bytes object serves both.
    """

    def __init__(self, fam: Family) -> None:
        self.name = f"{fam.name}_total" if fam.kind == "counter" else fam.name
        self.pairs = _sorted_pairs(fam.labels)

    def encode(self, rows: Iterable[Row]) -> bytes:
        """Return the sample lines of `rows`."""
        out: list[str] = []
        pairs, known = self.pairs, _ESCAPED.get
        for labels, value in rows:
            assert not isinstance(value, Histogram)
            # `or`: an empty value is escaped each time, and still right
            inner = ",".join([f'{k}="{known(labels[i]) or _escape_new(labels[i])}"'
                              for k, i in pairs])
            out.append(f"{self.name}{{{inner}}} {_float_to_go(float(value))}\n")
        return "".join(out).encode()


class _Hist:
    """Encode a histogram family's rows straight to lines while no bucket has an exemplar.

    Both formats print exemplar-free buckets, _count and _sum identically (labels sorted by
    name with `le` among them, Go float format); a row with an exemplar makes encode() return
    None and the library's objects take over.
    """

    def __init__(self, fam: Family) -> None:
        self.name = fam.name
        self.pairs = _sorted_pairs(fam.labels)
        self.before = [p for p in self.pairs if p[0] < "le"]  # `le` sorts among the labels
        self.after = [p for p in self.pairs if p[0] > "le"]

    def encode(self, rows: Iterable[Row]) -> bytes | None:
        """Return the sample lines of `rows`; None when a bucket carries an exemplar."""
        out: list[str] = []
        name, known, to_go = self.name, _ESCAPED.get, _float_to_go
        for labels, hist in rows:
            assert isinstance(hist, Histogram)
            if not hist.counts:
                continue
            if hist.exemplars:
                return None
            esc = [known(v) or _escape_new(v) for v in labels]
            head = "".join([f'{k}="{esc[i]}",' for k, i in self.before])
            tail = "".join([f',{k}="{esc[i]}"' for k, i in self.after])
            for bound, count in zip((*hist.bounds, math.inf), hist.counts, strict=False):
                out.append(f'{name}_bucket{{{head}le="{to_go(bound)}"{tail}}} '
                           f"{to_go(float(count))}\n")
            if (hist.bounds[0] if hist.bounds else math.inf) >= 0:  # as the library's rule
                inner = ",".join([f'{k}="{esc[i]}"' for k, i in self.pairs])
                out.append(f"{name}_count{{{inner}}} {to_go(float(hist.counts[-1]))}\n"
                           f"{name}_sum{{{inner}}} {to_go(hist.sum)}\n")
        return "".join(out).encode()


def _encode(metrics: list[Metric]) -> tuple[bytes, bytes]:
    """Return (text format, OpenMetrics without # EOF) of some families."""
    text = generate_text(_Metrics(metrics))
    om = _generate_om(_Metrics(metrics))
    return text, om.removesuffix(_EOF)


@dataclass(slots=True)
class _OrgLines:
    """One org's encoded sample lines per per-org family, and the families that age."""

    org: OrgSnapshot | None
    health: OrgHealth | None
    text: list[bytes]
    om: list[bytes]
    aging: frozenset[int]  # indices (into the per-org families) whose rows depend on now


class OrgFragments:
    """Render the JobsCollector's families, reusing the lines of orgs that did not change."""

    def __init__(self, collector: JobsCollector) -> None:
        self.collector = collector
        self._families = collector.families
        self._per_org = [i for i, fam in enumerate(self._families) if fam.rows in SCOPES]
        fams = [self._families[i] for i in self._per_org]
        self._headers = [_encode([new_family(fam)]) for fam in fams]
        self._plain = [_Hist(fam) if fam.kind == "histogram" else _Plain(fam) for fam in fams]
        self._scope = [SCOPES[fam.rows] for fam in fams]
        self._aging = frozenset(n for n, fam in enumerate(fams) if fam.rows in AGING)
        self._lines: dict[Key, _OrgLines] = {}
        self._keys: list[Key] = []  # the orgs of the columns, in order
        # per per-org family: each org's lines, in the order of _keys
        self._text_cols: list[list[bytes]] = [[] for _ in self._per_org]
        self._om_cols: list[list[bytes]] = [[] for _ in self._per_org]
        self.reused = 0  # orgs whose lines the last render reused (for tests and benchmarks)

    def encode(self) -> tuple[list[bytes], list[bytes]]:
        """Return (text, OpenMetrics without # EOF) of every job family, in parts.

        Parts, not one string: at 10,000 orgs a joined copy is ~60 MB per format. Each per-org
        family's parts are kept as a column (one entry per org, in order) that a render only
        patches where an org changed or ages, then copies whole.
        """
        snap, now = self.collector.snapshot_and_now()
        keys = sorted(set(snap.orgs) | set(snap.health))
        self._patch(snap, keys, now)
        text: list[bytes] = []
        om: list[bytes] = []
        slot = {index: n for n, index in enumerate(self._per_org)}
        for index, fam in enumerate(self._families):
            n = slot.get(index)
            if n is None:
                metric = build_family(fam, snap, now)
                if metric is not None:
                    t, o = _encode([metric])
                    text.append(t)
                    om.append(o)
                continue
            text.append(self._headers[n][0])
            om.append(self._headers[n][1])
            text.extend(self._text_cols[n])
            om.extend(self._om_cols[n])
        return text, om

    def _patch(self, snap: ExporterSnapshot, keys: list[Key], now: float) -> None:
        """Bring the columns up to `snap`: changed orgs' lines, and fresh ages where they age."""
        rebuild = keys != self._keys
        if rebuild:  # an org came or went: positions moved
            self._keys = keys
            self._text_cols = [[b""] * len(keys) for _ in self._per_org]
            self._om_cols = [[b""] * len(keys) for _ in self._per_org]
        old_lines, lines = self._lines, {}
        text_cols, om_cols = self._text_cols, self._om_cols
        for i, key in enumerate(keys):
            got = lines[key] = self._org_lines(snap, key, now)
            if rebuild or got is not old_lines.get(key):
                for n, (t, o) in enumerate(zip(got.text, got.om, strict=True)):
                    text_cols[n][i], om_cols[n][i] = t, o
            for n in got.aging:
                text_cols[n][i], om_cols[n][i] = self._body(n, _mini(key, got), now)
        self._lines = lines

    def _org_lines(self, snap: ExporterSnapshot, key: Key, now: float) -> _OrgLines:
        """Return an org's lines: cached when its snapshot and health are the same objects."""
        org, health = snap.orgs.get(key), snap.health.get(key)
        old = self._lines.get(key)
        if old is not None and old.org is org and old.health is health:
            self.reused += 1
            return old
        mini = ExporterSnapshot(orgs={} if org is None else {key: org},
                                health={} if health is None else {key: health})
        bodies = [self._body(n, mini, now) for n in range(len(self._per_org))]
        text, om = [t for t, _ in bodies], [o for _, o in bodies]
        aging = frozenset(n for n in self._aging if text[n])
        return _OrgLines(org, health, text, om, aging)

    def _body(self, n: int, mini: ExporterSnapshot, now: float) -> tuple[bytes, bytes]:
        """Encode one per-org family of one org, without its header."""
        if not (mini.orgs if self._scope[n] == "org" else mini.health):
            return b"", b""  # e.g. an org not polled yet has health only
        fam = self._families[self._per_org[n]]
        body = self._plain[n].encode(fam.rows(mini, now))
        if body is not None:
            return body, body
        metric = _filled(fam, mini, now)
        fast = _fast_body(metric)
        if fast is not None:
            return fast
        text, om = _encode([metric])
        head_text, head_om = self._headers[n]
        return text[len(head_text):], om[len(head_om):]


def _mini(key: Key, got: _OrgLines) -> ExporterSnapshot:
    return ExporterSnapshot(orgs={} if got.org is None else {key: got.org},
                            health={} if got.health is None else {key: got.health})


def _filled(fam: Family, snap: ExporterSnapshot, now: float) -> Metric:
    """Return the family with the snapshot's rows; empty (header only) when it has none."""
    metric = build_family(fam, snap, now)
    return new_family(fam) if metric is None else metric

