"""Prometheus metrics, read at scrape time.

The hot path keeps plain integer counters (in the hub, the service, the store); the collector
turns them into metric families only when `/metrics` is scraped, so counting costs nothing
extra per message. Batch sizes and commit latency are histograms the writer adds to once
per batch, the same way: plain counts per bucket (`Tally`), made a histogram at scrape time.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Iterator
from typing import Final

from prometheus_client import CollectorRegistry, GCCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from fastchat import __version__
from fastchat.service import Chat
from fastchat.workermetrics import SNAPSHOT_SECONDS, WorkersCollector


class ChatCollector(Collector):
    def __init__(self, chat: Chat) -> None:
        self.chat = chat

    def collect(self) -> Iterator[Metric]:
        chat, hub, store = self.chat, self.chat.hub, self.chat.store
        info = InfoMetricFamily("fastchat", "Which fastchat answered")
        info.add_metric([], {"version": __version__, "node": chat.broker.node})
        yield info

        connections = GaugeMetricFamily(
            "fastchat_connections", "Open WebSocket connections", labels=["port"]
        )
        for port in ("fast", "http"):
            connections.add_metric([port], chat.connections.open[port])
        yield connections
        opened = CounterMetricFamily(
            "fastchat_connections_opened", "WebSocket connections accepted", labels=["port"]
        )
        for port in ("fast", "http"):
            opened.add_metric([port], chat.connections.opened[port])
        yield opened

        cluster = chat.rooms.cluster_stats()
        yield GaugeMetricFamily(
            "fastchat_cluster_nodes", "Nodes alive (this one included)", value=cluster["nodes"]
        )
        yield GaugeMetricFamily(
            "fastchat_cluster_connections",
            "WebSocket connections on all nodes (from their last heartbeats)",
            value=cluster["connections"],
        )
        yield GaugeMetricFamily(
            "fastchat_rooms", "Rooms and posts with members", value=hub.room_count
        )
        yield GaugeMetricFamily(
            "fastchat_members", "Room memberships, all rooms", value=hub.membership_count
        )
        yield CounterMetricFamily(
            "fastchat_joins", "Rooms and posts joined", value=chat.rooms.joins
        )
        received = CounterMetricFamily(
            "fastchat_received", "Messages and comments received", labels=["kind"]
        )
        received.add_metric(["message"], chat.messages_in)
        received.add_metric(["comment"], chat.comments_in)
        yield received
        yield CounterMetricFamily(
            "fastchat_published", "Events fanned out to a room", value=hub.publishes
        )
        yield CounterMetricFamily(
            "fastchat_deliveries",
            "Events queued to a member (fan-out deliveries)",
            value=hub.deliveries,
        )
        yield CounterMetricFamily(
            "fastchat_socket_writes", "Coalesced writes to sockets", value=hub.writes
        )
        yield CounterMetricFamily(
            "fastchat_slow_consumers_dropped",
            "Connections dropped for not reading",
            value=hub.slow_drops,
        )
        resumes = CounterMetricFamily(
            "fastchat_resumes",
            "Resumes (joins with last_id) done, by where their replay came from",
            labels=["source"],
        )
        for source, n in chat.delivery.resumes.items():
            resumes.add_metric([source], n)
        yield resumes
        yield GaugeMetricFamily(
            "fastchat_replays_waiting",
            "Resumes paused until their client reads what was replayed so far",
            value=chat.delivery.replays_waiting,
        )
        yield CounterMetricFamily(
            "fastchat_write_failures",
            "Connections whose socket write raised, each reported and closed (1011) so it resumes",
            value=hub.write_failures,
        )
        yield HistogramMetricFamily(
            "fastchat_fanout_seconds",
            "Per flush of the hub: from its oldest frame queued (a publish or send) to the end "
            "of the socket writes that sent it",
            buckets=fanout_buckets(hub.wait_histogram),
            sum_value=hub.wait_ns_sum / 1e9,
        )
        errors = CounterMetricFamily("fastchat_errors", "Refusals by error code", labels=["code"])
        for code, n in sorted(chat.errors.items()):
            errors.add_metric([code], n)
        yield errors
        yield CounterMetricFamily(
            "fastchat_store_batches", "Committed batches", value=store.batches
        )
        yield CounterMetricFamily("fastchat_store_rows", "Rows committed", value=store.rows)
        yield CounterMetricFamily(
            "fastchat_store_failed_batches",
            "Batches the database refused",
            value=store.failed_batches,
        )
        yield CounterMetricFamily(
            "fastchat_store_thread_batches",
            "Batches the loop handed to the writer thread (lock held elsewhere, fsync, big WAL)",
            value=store.thread_batches,
        )
        yield GaugeMetricFamily(
            "fastchat_store_pending", "Writes queued, not yet committed", value=store.pending
        )
        checkpoints = CounterMetricFamily(
            "fastchat_store_checkpoints",
            "SQLite WAL checkpoints, by who ran them (the checkpointer thread, or the writer "
            "past the WAL's hard limit)",
            labels=["by"],
        )
        checkpoints.add_metric(["checkpointer"], store.checkpoints)
        checkpoints.add_metric(["writer"], store.inline_checkpoints)
        yield checkpoints


# fastchat_fanout_seconds' bounds: every octave from 16 us to ~1 s. The hub counts in eighths
# of an octave whose edges include these exactly, so the buckets are exact, not interpolated.
FANOUT_BOUNDS_US: Final = tuple(2**k for k in range(4, 21))


def fanout_buckets(histogram: list[list[int]]) -> list[tuple[str, float]]:
    """The hub's [[upper bound ns, count], ...] as cumulative Prometheus buckets."""
    counts = [0] * (len(FANOUT_BOUNDS_US) + 1)
    for upper_ns, count in histogram:
        i = bisect.bisect_left(FANOUT_BOUNDS_US, upper_ns / 1000)
        counts[i] += count
    return cumulative(tuple(bound / 1e6 for bound in FANOUT_BOUNDS_US), counts)


def cumulative(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    """A count per bucket (the last: above every bound) as Prometheus's cumulative buckets,
    labelled as prometheus_client labels its own."""
    buckets: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip((*bounds, None), counts, strict=True):
        total += count
        buckets.append(("+Inf" if bound is None else repr(float(bound)), total))
    return buckets


# The writer's histograms: operations per committed transaction, seconds per commit.
BATCH_BOUNDS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
COMMIT_BOUNDS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.5,
    1,
)


class Tally:
    """A histogram the writer adds to once per commit, on the loop or the writer thread
    (one commit at a time): a count per bucket and the sum, plain numbers, made a Prometheus
    histogram at scrape time (`family`). prometheus_client's `Histogram.observe` took
    ~0.8 us a call here (a lock per bucket count and per sum), twice per commit; this takes
    ~0.15 us. A message sent alone (a commit of its own: a chat at human pace) cost about
    110 us of server CPU, so that was 1.5 % of it."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0

    def add(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        buckets = cumulative(self.bounds, self.counts)
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.sum)


class WriterCollector(Collector):
    """The writer's two histograms (`Metrics.on_batch` adds to them)."""

    def __init__(self) -> None:
        self.batch_size = Tally(BATCH_BOUNDS)
        self.commit_seconds = Tally(COMMIT_BOUNDS)

    def collect(self) -> Iterator[Metric]:
        yield self.batch_size.family(
            "fastchat_store_batch_size", "Operations per committed transaction"
        )
        yield self.commit_seconds.family(
            "fastchat_store_commit_seconds", "Time to write and commit one batch"
        )


class Metrics:
    """The registry behind `/metrics`, one per server (per worker with `--workers`).

    `local` holds this process's metrics: the chat collector, the writer's histograms,
    `process_*` (RSS, open fds, CPU seconds, start time) and `python_gc_*`. With workers
    (`share_dir` set) `registry` merges every worker's (workermetrics.py); otherwise it is
    `local` itself."""

    def __init__(self, chat: Chat, *, worker: int = 0, share_dir: str | None = None) -> None:
        self.local = CollectorRegistry(auto_describe=True)
        self.local.register(ChatCollector(chat))
        ProcessCollector(registry=self.local)
        GCCollector(registry=self.local)  # python_gc_*: the collector's passes (server.settle_gc)
        self.writer = WriterCollector()
        self.local.register(self.writer)
        self.workers: WorkersCollector | None = None
        self.registry = self.local
        if share_dir:
            self.workers = WorkersCollector(self.local, worker, share_dir)
            self.registry = CollectorRegistry()
            self.registry.register(self.workers)
        self._sharing: asyncio.Task[None] | None = None

    def on_batch(self, size: int, seconds: float) -> None:
        """Called after each commit, by whichever side committed it (the loop or the writer
        thread, never both at once: the store commits one batch at a time)."""
        self.writer.batch_size.add(size)
        self.writer.commit_seconds.add(seconds)

    def start(self) -> None:
        """With workers: share this worker's metrics every SNAPSHOT_SECONDS (on the loop:
        the collectors read the hub's state)."""
        if self.workers is not None and self._sharing is None:
            self._sharing = asyncio.get_running_loop().create_task(self._share(self.workers))

    def stop(self) -> None:
        if self._sharing is not None:
            self._sharing.cancel()
            self._sharing = None

    @staticmethod
    async def _share(workers: WorkersCollector) -> None:
        while True:
            workers.write()
            await asyncio.sleep(SNAPSHOT_SECONDS)
