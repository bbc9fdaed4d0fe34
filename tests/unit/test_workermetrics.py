"""fastchat.workermetrics: any worker's scrape answers for all of them.

Registries of prometheus_client's own types stand for the workers; their snapshots go
through real files in `tmp_path`, as between worker processes.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fastchat.workermetrics import Snapshot, WorkersCollector, merge, snapshot

DEAD_PID = 2**22 + 1  # above Linux's pid_max: no such process


class Worker:
    """One worker's own metrics, like metrics.Metrics.local."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sent = Counter("fastchat_sent", "Frames sent", ["port"], registry=self.registry)
        self.open = Gauge("fastchat_connections", "Open connections", registry=self.registry)
        self.nodes = Gauge("fastchat_cluster_nodes", "Nodes alive", registry=self.registry)
        self.rss = Gauge("process_resident_memory_bytes", "RSS", registry=self.registry)
        self.latency = Histogram(
            "fastchat_commit_seconds", "Commit time", buckets=(0.1, 1), registry=self.registry
        )


def values(snapshots: list[Snapshot], alive: frozenset[int]) -> dict[tuple[str, tuple], float]:
    registry = CollectorRegistry()

    class Merged:
        def collect(self):  # type: ignore[no-untyped-def]
            return merge(snapshots, alive=alive)

    registry.register(Merged())
    text = generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def two_workers() -> tuple[Worker, Worker]:
    a, b = Worker(), Worker()
    a.sent.labels("fast").inc(3)
    b.sent.labels("fast").inc(4)
    b.sent.labels("http").inc(1)
    a.open.set(2)
    b.open.set(5)
    a.nodes.set(3)
    b.nodes.set(3)
    a.rss.set(100)
    b.rss.set(200)
    a.latency.observe(0.05)
    b.latency.observe(0.5)
    return a, b


def test_totals_under_the_usual_names() -> None:
    a, b = two_workers()
    got = values([snapshot(a.registry, 1), snapshot(b.registry, 2)], frozenset({os.getpid()}))
    assert got[("fastchat_sent_total", (("port", "fast"),))] == 7
    assert got[("fastchat_sent_total", (("port", "http"),))] == 1
    assert got[("fastchat_connections", ())] == 7
    # Every worker reports the cluster alike: the total is not 2x the cluster.
    assert got[("fastchat_cluster_nodes", ())] == 3
    assert got[("fastchat_commit_seconds_bucket", (("le", "0.1"),))] == 1
    assert got[("fastchat_commit_seconds_bucket", (("le", "1.0"),))] == 2
    assert got[("fastchat_commit_seconds_count", ())] == 2
    assert got[("fastchat_commit_seconds_sum", ())] == 0.55


def test_a_breakdown_per_worker_and_process_metrics_labelled() -> None:
    a, b = two_workers()
    got = values([snapshot(b.registry, 2), snapshot(a.registry, 1)], frozenset({os.getpid()}))
    assert got[("fastchat_worker_sent_total", (("port", "fast"), ("worker", "1")))] == 3
    assert got[("fastchat_worker_sent_total", (("port", "fast"), ("worker", "2")))] == 4
    assert got[("fastchat_worker_connections", (("worker", "2"),))] == 5
    assert got[("fastchat_worker_commit_seconds_count", (("worker", "1"),))] == 1
    assert got[("process_resident_memory_bytes", (("worker", "1"),))] == 100
    assert got[("process_resident_memory_bytes", (("worker", "2"),))] == 200
    assert ("process_resident_memory_bytes", ()) not in got  # per process only


def test_a_dead_worker_keeps_its_counts_in_the_totals_and_nothing_else() -> None:
    a, b = two_workers()
    dead = snapshot(b.registry, 2)
    dead.pid = DEAD_PID
    got = values([snapshot(a.registry, 1), dead], frozenset({os.getpid()}))
    assert got[("fastchat_sent_total", (("port", "fast"),))] == 7  # totals never go back
    assert got[("fastchat_connections", ())] == 2  # its connections are gone with it
    assert not [k for k in got if ("worker", "2") in k[1]]


def test_any_worker_answers_for_all_through_the_shared_directory(tmp_path: Path) -> None:
    a, b = two_workers()
    first = WorkersCollector(a.registry, 1, tmp_path)
    second = WorkersCollector(b.registry, 2, tmp_path)
    second.write()  # the other worker's last snapshot
    registry = CollectorRegistry()
    registry.register(first)  # worker 1 answers
    text = generate_latest(registry).decode()
    assert 'fastchat_sent_total{port="fast"} 7.0' in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["worker-1.json", "worker-2.json"]
    # Traffic on worker 2 after its snapshot: not counted until it writes again.
    b.sent.labels("fast").inc(10)
    assert 'fastchat_sent_total{port="fast"} 7.0' in generate_latest(registry).decode()
    second.write()
    assert 'fastchat_sent_total{port="fast"} 17.0' in generate_latest(registry).decode()


def test_a_torn_or_foreign_file_is_skipped(tmp_path: Path) -> None:
    a, _ = two_workers()
    (tmp_path / "worker-9.json").write_text('{"worker": 9, "pid"')
    registry = CollectorRegistry()
    registry.register(WorkersCollector(a.registry, 1, tmp_path))
    assert 'fastchat_sent_total{port="fast"} 3.0' in generate_latest(registry).decode()
