"""Prometheus metrics, read at scrape time.

The hot path keeps plain integer counters (in the hub, the service, the store); the collector
turns them into metric families only when `/metrics` is scraped, so counting costs nothing
extra per message. Batch sizes and commit latency are histograms observed by the writer
thread, once per batch.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Final

from prometheus_client import CollectorRegistry, Histogram
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
        connections.add_metric(["fast"], hub.fast_members)
        connections.add_metric(["http"], hub.sink_members)
        yield connections
        opened = CounterMetricFamily(
            "fastchat_connections_opened", "WebSocket connections accepted", labels=["port"]
        )
        for port in ("fast", "http"):
            opened.add_metric([port], chat.connections_opened[port])
        yield opened

        cluster = chat.cluster_stats()
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
        yield CounterMetricFamily("fastchat_joins", "Rooms and posts joined", value=chat.joins)
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
    buckets: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip((*FANOUT_BOUNDS_US, None), counts, strict=True):
        total += count
        buckets.append(("+Inf" if bound is None else repr(bound / 1e6), total))
    return buckets


class Metrics:
    """The registry behind `/metrics`, one per server."""

    def __init__(self, chat: Chat) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(ChatCollector(chat))
        self.batch_size = Histogram(
            "fastchat_store_batch_size",
            "Operations per committed transaction",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "fastchat_store_commit_seconds",
            "Time to write and commit one batch",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1),
            registry=self.registry,
        )

    def on_batch(self, size: int, seconds: float) -> None:
        """Called by the writer thread after each commit."""
        self.batch_size.observe(size)
        self.commit_seconds.observe(seconds)
