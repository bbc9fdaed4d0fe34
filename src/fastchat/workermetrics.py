"""Metrics with `--workers N`: whichever worker answers a scrape, it speaks for all of them.

The kernel hands each `/metrics` scrape to any worker (SO_REUSEPORT), so a worker answering
with its own counters alone made every series jump between processes. prometheus_client's
multiprocess mode does not fit: it aggregates only the metric objects that write through its
mmap files, and its documentation lists custom collectors (ours read the hub's counters at
scrape time, so counting costs nothing per message) and process metrics among what does not
work in it.

So, in the same spirit: the supervisor makes a temporary directory; each worker writes a
snapshot of its own metrics there (JSON, replaced atomically) every `SNAPSHOT_SECONDS` and
whenever it answers a scrape; the worker answering reads every worker's snapshot and exposes

- the totals under the usual names: counters and histograms summed over all workers (those of
  a worker that died included, so totals never go back), gauges summed over the live ones,
  except the cluster-wide gauges every worker reports alike, whose total is their maximum;
- a breakdown under `fastchat_worker_*`, each series with a `worker` label (1..N), and
  `fastchat_info`, `process_*` and `python_gc_*` per worker with that label (live workers
  only).

Counters stay monotonic whichever worker answers: a snapshot file only ever moves forward, and
a worker answering writes its own before reading the others'. The others' figures are at most
`SNAPSHOT_SECONDS` old.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import msgspec
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

log = logging.getLogger("fastchat.metrics")

# How stale the other workers' figures in a scrape may be. A snapshot (collect, encode,
# write, rename) measured 1.5-2.7 ms of the loop on the 2-core dev machine: ~0.2 % of a core.
SNAPSHOT_SECONDS: Final = 1.0
PREFIX: Final = "fastchat_"
BREAKDOWN: Final = "fastchat_worker_"
# Gauges each worker reports for the whole cluster (from its heartbeats): alike on every
# worker, so their sum would count the cluster N times.
CLUSTER_WIDE: Final = frozenset({"fastchat_cluster_nodes", "fastchat_cluster_connections"})

Sample = tuple[str, dict[str, str], float]


class Family(msgspec.Struct, array_like=True):
    name: str
    type: str
    help: str
    unit: str
    samples: list[Sample]


class Snapshot(msgspec.Struct):
    worker: int
    pid: int
    families: list[Family]


_decode = msgspec.json.Decoder(Snapshot).decode
_encode = msgspec.json.Encoder().encode


def snapshot(registry: CollectorRegistry, worker: int) -> Snapshot:
    families = [
        Family(
            m.name,
            m.type,
            m.documentation,
            m.unit,
            [(s.name, s.labels, s.value) for s in m.samples],
        )
        for m in registry.collect()
    ]
    return Snapshot(worker, os.getpid(), families)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def merge(snapshots: list[Snapshot], *, alive: frozenset[int] | None = None) -> Iterator[Metric]:
    """Totals under the usual names, then the per-worker series (see the module's doc).
    `alive`: the pids taken for live (default: asked of the kernel)."""
    totals: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    per_worker: dict[str, Metric] = {}
    for snap in sorted(snapshots, key=lambda s: s.worker):
        live = snap.pid in alive if alive is not None else _alive(snap.pid)
        label = str(snap.worker)
        for fam in snap.families:
            own = not fam.name.startswith(PREFIX) or fam.type == "info"
            if live:
                name = fam.name if own else BREAKDOWN + fam.name[len(PREFIX) :]
                metric = per_worker.get(name)
                if metric is None:
                    metric = per_worker[name] = Metric(name, fam.help, fam.type, fam.unit)
                for sample_name, labels, value in fam.samples:
                    if not own:
                        sample_name = BREAKDOWN + sample_name[len(PREFIX) :]
                    metric.add_sample(sample_name, {"worker": label, **labels}, value)
            if own or (fam.type == "gauge" and not live):
                continue
            if fam.name not in totals:
                totals[fam.name] = Metric(fam.name, fam.help, fam.type, fam.unit)
                values[fam.name] = {}
            into = values[fam.name]
            for sample_name, labels, value in fam.samples:
                key = (sample_name, tuple(sorted(labels.items())))
                before = into.get(key)
                if before is None:
                    into[key] = value
                elif sample_name.endswith("_created"):
                    into[key] = min(before, value)
                elif fam.name in CLUSTER_WIDE:
                    into[key] = max(before, value)
                else:
                    into[key] = before + value
    for name, metric in totals.items():
        for (sample_name, label_pairs), value in values[name].items():
            metric.add_sample(sample_name, dict(label_pairs), value)
        yield metric
    yield from per_worker.values()


class WorkersCollector:
    """The `/metrics` collector of a worker: writes its own snapshot, merges everyone's."""

    def __init__(self, local: CollectorRegistry, worker: int, directory: str | Path) -> None:
        self.local = local
        self.worker = worker
        self.directory = Path(directory)
        self.path = self.directory / f"worker-{worker}.json"

    def write(self) -> Snapshot:
        """Snapshot this worker's metrics and publish it to the others."""
        snap = snapshot(self.local, self.worker)
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_bytes(_encode(snap))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("cannot share this worker's metrics in %s: %s", self.directory, exc)
        return snap

    def read(self, own: Snapshot) -> list[Snapshot]:
        """Every worker's last snapshot, this one's being `own`."""
        snaps = [own]
        for path in self.directory.glob("worker-*.json"):
            if path == self.path:
                continue
            try:
                snaps.append(_decode(path.read_bytes()))
            except (OSError, msgspec.DecodeError) as exc:
                log.warning("cannot read the metrics of %s: %s", path.name, exc)
        return snaps

    def collect(self) -> Iterator[Metric]:
        yield from merge(self.read(self.write()))
