"""Fixed prose of RESULTS.md: method, the naive baseline, the profile and what it changed."""

NOTES = """
## How it is measured

- Three kinds of child processes of `benchmarks.run`, all on loopback free ports: the simulator
  (`python -m exporter simulate`), our daemon (`python -m exporter --config.file ...`) and the
  naive exporter (`python -m benchmarks.naive`). Per scenario one simulator; our exporter runs
  first, then the naive one against the same simulator process, never both at once.
- World per scale: one org with N finished jobs (`--history N`) plus 50 pending jobs, each
  followed by 10 failed ones, so the pending jobs are spread over the newest pages as stuck jobs
  would be. The simulator clock is paused and jobs last 10^6 s: nothing changes unless the
  benchmark changes it, so a cycle's requests are the steady-state cost.
- Our config: `interval: 1s`, `jitter: 0`, `concurrency: 8`, `max_requests_per_second: 1000`
  (the default bucket of 5/s would turn the 1,000-page first sync at 100k into 200 s), SQLite
  state file in a temp dir.
- API requests per cycle: the simulator's own counter (`/_sim/requests`), reset on a poll
  boundary and read after k polls, divided by k. The naive exporter's counts are the same
  counter over one whole cycle.
- CPU per cycle: utime + stime from `/proc/PID/stat` over the same k polls (includes the render
  each poll triggers). Naive: whole-process CPU over its cycle. No scrapes run in these windows.
- Wall per cycle: ours, the median `duration` of the poll log lines; naive, its cycle time.
- Scrape latency: back-to-back `GET /metrics` on one keep-alive connection with Prometheus'
  default `Accept` (OpenMetrics preferred) and `Accept-Encoding: gzip`, while the exporter keeps
  polling on its schedule (the naive one is in the middle of a cycle). Bytes: the plain-text
  body, and what is sent for the gzip/OpenMetrics variant Prometheus negotiates.
- Peak RSS: `VmHWM` from `/proc/PID/status` at the end of the scenario, so it includes the first
  full sync. Detection: `POST /_sim/fail_job`, `POST /_sim/advance {"seconds": 1}` (from then on
  the API shows the job failed), then `GET /metrics` every 10 ms until
  `asyncjob_failed_job_info` names the job (naive: its per-job gauge reads 2). Each repetition
  starts at a random phase against the polls.
- Many orgs: `--vocdoni-orgs 1000 --history 20 --latency-ms 50`, `concurrency: 50`. The cycle is
  the first poll of every org, from the earliest poll start to the latest poll end (poll log
  lines). It is a full sync (the heaviest cycle); 100 orgs are the first 100 of the same world.
  The naive exporter polls orgs one after another; it runs a few seconds and its cycle is
  extrapolated from its pace per org (marked in the table).
- Vote scale: `--full` adds one org of 1,000,000 finished jobs (ours only: the naive exporter
  would need ~15 minutes a cycle) and 10,000 orgs; bytes per tracked job come from
  `benchmarks.memcurve` (10k and 100k in `--quick`, plus 1M in `--full`), one child process per
  size. The org scenario waits for the polls by counting raw log lines every 0.25 s.
- `--quick` measures every figure once with fewer repetitions (3 steady cycles, 1.5 s of scrapes,
  3 detections per scale, the naive exporter's first cycle, which does the same requests as any
  other) and only the scales the targets read (10k and 100k jobs; Ordo's steady poll at 100k
  only), to stay under 4 minutes; `--full` adds the 1k and 1M scales and uses 10 cycles, 15 s
  of scrapes, 10 detections and the naive's second cycle.
- The many-org cycle is the median of 3 first cycles per org count, each on a fresh state file
  (all three are listed; the peak RSS is the worst of the three): one run on this shared
  machine varied by 10-15% from the next.

## Reading the tables

- Our 6 requests per steady-state cycle are page 1 plus the 5 newer pages that hold the other
  pending jobs (a page is re-read when it covers 2 or more of them, else `GET /jobs/{id}`); with
  no pending job beyond page 1 it is 1 request (docs/polling.md). The naive exporter pays
  pages + one request per job, every cycle.
- At 1,000 jobs our process is larger than the naive one (pydantic, structlog, SQLite, four
  cached exposition variants); from 10,000 jobs on the naive one grows with its per-job series.
- The naive exporter's scrape time grows with its series (one per job); ours is flat because the
  exposition holds aggregates (plus at most `max_job_series_per_org` per-job series) and is
  rendered once per poll, never on the scrape path.

## The naive baseline

`benchmarks/naive.py`, about 100 lines, is the exporter a user writes in an afternoon:
prometheus_client global `Gauge`s on the default registry and `start_http_server` (so each scrape
renders the registry on the scraping thread, competing for the GIL with the poll thread), a
loop that reads every page of `GET /jobs?orgAddress=`, then `GET /jobs/{id}` for every job
through a 4-thread pool over one keep-alive httpx client, sets a per-job status gauge and the
per-(type, status) counts, and sleeps `interval`. The per-job gauge is what people expose once
they fetch every job anyway ("which job failed?"). Nothing is stubbed or slowed down; its
requests are counted by the simulator, not by itself.

## Profile of the hottest paths and what it changed

1. **Steady-state poll at 100k jobs** (cProfile, 5 polls of one org): 91 ms per poll, of which
   `OrgTracker.active_ids()` (a scan of all 100k jobs, called twice per poll by the Vocdoni
   source) was 56 % and `OrgTracker.snapshot()` (another full scan for the oldest-active ages and
   progress) 24 %. The tracker now keeps an index of non-terminal jobs in step with every status
   change, and the snapshot walks only that: **11 ms per poll**, now dominated by the HTTP
   request and the JSON decoding of page 1 (79 KB).
2. **Peak RSS at 100k jobs** (tracemalloc + VmHWM): 508 MB. A full re-list kept every raw list
   item (results, vote lists, error texts) until all 1,000 pages were read; only 38 MB was live
   afterwards, but the freed memory stayed with the process (fragmented pymalloc arenas), so RSS
   stayed near 480 MB. The Vocdoni source now keeps only the fields its parsers read
   (`_slim()` in `sources/vocdoni.py`, type and status strings shared), the tracker keeps one
   string per job type instead of one per job, and plain ASCII job ids are no longer copied by
   label cleaning (the ASCII fast path of `clean_label`): about **140 MB peak, ~108 MB after the
   sync**.
3. **First sync at 100k jobs** (py-spy): `clean_label`'s per-character Unicode checks were 14 %
   of it; the ASCII fast path took `OrgTracker.apply` from 1.37 s to 0.31 s.
4. **1,000 orgs behind a 50 ms API** (py-spy): the first cycle took 32.5 s. 55 % of the samples
   were the render thread: every poll invalidated the cache and each render of the growing
   exposition (~1 s at 1,000 orgs) was repeated every 0.25 s, holding the GIL and starving the
   poll loop; 19 % was `Scheduler.publish` rebuilding every org's health after each poll
   (O(orgs^2) per cycle). Renders now collect once for both formats (half the collector work,
   and the two formats always agree) and wait at least 4 render durations before the next one
   (rendering stays under 20 % of a core); histogram freezes are cached until the next
   observation: 11.4 s. Then the simulator's listen backlog of 5 turned out to drop SYNs when
   50 connections open at once (1-3 s TCP retransmit stalls; 100 orgs took 7.8 s instead of
   0.5 s); with a backlog of 128 the 1,000-org cycle is **about 9 s**, CPU-bound. The largest
   remaining cost is `Scheduler.publish` (35 % of samples; see below).
5. **Scrape latency** was 44 ms at every scale: the HTTP server wrote headers and body in two
   writes without `TCP_NODELAY`, so a keep-alive scraper (Prometheus) waited for the delayed
   ACK. With `disable_nagle_algorithm`: **~0.5 ms p50**. Scrapes never render: they copy the
   cached bytes of the last render (plain and gzip, text and OpenMetrics).

Not done yet (outside the files of this change): `StateStore.save` is 12 % of a 100k first
sync; normalizing Vocdoni items page by page (instead of slimmed dicts) would cut the 100k peak
RSS by roughly another 30 MB.

## Vote scale (issue 16): profiles and changes

6. **Bytes per tracked job** (tracemalloc, `python -m benchmarks.memcurve`): 258 B a job in the
   tracker (a 64-hex id string 113 B, a `JobRecord` with 9 slots, two floats, a dict slot) and
   122 B in the state file (source and org address repeated on every row). A counted finished
   job now lives in `FinishedJobs` (`state/finished.py`): its id packed (hex as raw bytes) in one
   bytearray, type and status as one integer, created_at and first_seen in `array('d')`, found
   through an open-addressing table that is itself an `array('I')`: **~90 B a job, no Python
   object per job**. Schema 4 of the state file keeps them in a `finished` table (integer org
   key, packed id, one integer for type and status): **~50 B a job**; schema 2/3 files are
   migrated when opened. Live jobs stay full records (`JobBook.full`); a finished job listed
   again is checked against its packed row without building a record.
7. **Peak RSS at 100k and 1M jobs** (VmHWM): the tracker is now ~9 MB at 100k, ~90 MB at 1M;
   the peak is the first sync itself: the Vocdoni source holds every page's slimmed items and
   then every observation until the poll ends (~650 MB at 1M: 842 MB peak, 344 MB after the
   sync, 52 MB state file, the harness's 1M scale run alone). Item 9 takes that transient away.
8. **1,000 orgs, first cycle** (cProfile on every thread: `python -m benchmarks.profile_run`):
   `Scheduler.publish` walked every org after each poll: 1M `OrgLoop.health` and 2M
   `stalled` calls per cycle (19 % of the main thread). `publish_org` now refreshes the polled
   org's entries only (a dict copy); stalls stay the watchdog's full publish. The render thread
   re-encoded all orgs each time (1.05 s CPU at 1,000 orgs): `OrgFragments`
   (`exporter/fragments.py`) keeps each org's encoded lines while its snapshot and health are the
   same objects and re-encodes only rows that age with the render time: **0.1 s** after one
   org's poll (mostly gzip). It writes the sample lines itself (the library validated and
   escaped every name character by character): a cold render of 1,000 orgs **0.46 s instead of
   1.29 s**, byte for byte the library's output (`tests/test_fragments.py`). httpcore tried
   `import sniffio` on every request (not installed:
   a failed import searches sys.path, ~65 µs, far more under load): sniffio is now a dependency.
   And the benchmark itself parsed the exporter's whole JSON log every 20 ms while waiting for
   the polls, on the same 2 CPUs: it now counts raw lines every 0.25 s. Process CPU for the
   1,000-org run (start to all polled): 6.1 s before, **3.6-4.0 s** after, of which 0.7 s
   is startup. What remains is mostly httpx/httpcore (half of the main thread: its pool scans
   every connection, `is_idle` 1.3M calls a cycle, and asks each socket its peer name per
   request; a pool sized to `concurrency` is the next step, in `sources/http.py`), then the
   state saves (one transaction per org) and one encoding of each org's lines. On 2 cores
   shared with the simulator, ~3 s of CPU is the floor of this cycle, above the 2.5 s target.
9. **First sync memory and scrapes during it** (VmHWM by stage of an in-process 100k Vocdoni
   first sync; tracemalloc at the peak; a GIL-latency probe thread): the poll peaked at
   +88 MB (items kept as dicts until the last page, then all observations), the merge added
   a set of every id seen and a dirty set naming every new job, and the packed-id table was
   re-hashed at each doubling (every row in Python: 17 ms with the GIL at 65k rows, ~0.3 s at
   1M). Now each page is normalized the moment it arrives (only the pages in flight are raw)
   into `ObservedJobs` (`sources/observed.py`: packed id, a few array slots, ~80 B a job), the
   tracker builds one observation at a time, needs no id set when it knew nothing before, and
   new packed rows are written by row (`DirtyIds`), with both id tables sized once from the
   list's total. 100k first sync (`benchmarks/sync_scale.py`, 3 runs each, medians, same
   session, 10 ms a page, concurrency 8): VmHWM **85 MB instead of 147**; scrape max
   14-21 ms instead of 26-28. The scrape p99 figures before this change (10-11 ms) were partly
   the benchmark's own: it re-parsed the exporter's whole JSON log (a line per scrape) every
   20 ms in the scraper's process; counting raw lines every 0.25 s instead, p99 is **6.2 ms
   with this change and 6.2 ms before it** (the remaining tail is CPU contention: simulator,
   exporter and scraper on 2 cores; the probe saw no GIL hold over 3.6 ms in the merge or the
   write). At 1M the merge takes longer than 3 poll intervals without an API request and the
   stall watchdog cancelled the poll as stalled, for ever (`requests: 50000` for one sync):
   each pacer pause is now a sign of life.

## Ordo steady-state poll vs history (`python -m benchmarks.ordo_scale`)

Run on 2026-12-04 against the simulator (`--ordo-history N`, 0.5 new jobs/s, poll interval 2 s,
full resync hourly), 5 steady polls per size (3 in the quick run), exporter CPU from /proc.
Keys in results.json:
`ordo_steady`, `ordo_requests_per_poll_100k`, `ordo_cpu_s_per_poll_100k`. Before (list every poll,
issue 17, real Ordo): 2 requests, 18.1 MB and 1.17 s exporter CPU per poll at 100k jobs.

| history | requests / poll | exporter CPU / poll | first sync | tracked jobs | peak RSS |
|---|---|---|---|---|---|
| 1,000 | 1.2 | 10 ms | 0.59 s | 1,004 | 49.9 MiB |
| 10,000 | 1.8 | 14 ms | 0.58 s | 10,007 | 56.9 MiB |
| 100,000 | 1.8 | 12 ms | 3.21 s | 100,009 | 134.7 MiB |
"""
