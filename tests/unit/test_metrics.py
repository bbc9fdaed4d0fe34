"""fastchat.metrics: the writer's histograms, counted by hand, scrape as prometheus_client's
own Histogram would (dashboards and alerts read their `le` labels and counts)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from fastchat.metrics import BATCH_BOUNDS, COMMIT_BOUNDS, WriterCollector

# (batch size, commit seconds): values on bounds, between them, and past the last.
COMMITS = [(1, 0.0001), (2, 0.00009), (17, 0.0003), (64, 0.00025), (1024, 1.0), (5000, 3.0)]


def scrape(registry: CollectorRegistry) -> list[str]:
    # prometheus_client's Histogram adds a `_created` timestamp; the writer's has none.
    return [
        line for line in generate_latest(registry).decode().splitlines() if "_created" not in line
    ]


def test_the_writers_histograms_scrape_as_prometheus_clients_would() -> None:
    theirs = CollectorRegistry()
    sizes = Histogram(
        "fastchat_store_batch_size",
        "Operations per committed transaction",
        buckets=BATCH_BOUNDS,
        registry=theirs,
    )
    seconds = Histogram(
        "fastchat_store_commit_seconds",
        "Time to write and commit one batch",
        buckets=COMMIT_BOUNDS,
        registry=theirs,
    )
    ours = CollectorRegistry()
    writer = WriterCollector()
    ours.register(writer)
    assert scrape(ours) == scrape(theirs)  # nothing observed yet: every bucket at zero

    for size, took in COMMITS:
        sizes.observe(size)
        seconds.observe(took)
        writer.batch_size.add(size)
        writer.commit_seconds.add(took)

    got = scrape(ours)
    assert got == scrape(theirs)
    assert 'fastchat_store_batch_size_bucket{le="1.0"} 1.0' in got
    assert 'fastchat_store_batch_size_bucket{le="1024.0"} 5.0' in got
    assert 'fastchat_store_batch_size_bucket{le="+Inf"} 6.0' in got
    assert "fastchat_store_commit_seconds_count 6.0" in got
