"""Where the proxy's per-user byte deltas go (hooks.Reporter implementations).

`PROXY_REPORTER` names one: `local.MemoryReporter` (running totals), `local.FileReporter`
(JSON lines, for tests and debugging) or `kafka.KafkaReporter` (UserConsumedTrafficEvent,
losslessly). `counting.CountingReporter` wraps the configured one to count the bytes
for /metrics.
"""
