"""Every Prometheus collector, defined once, in a registry owned by the app (no globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, worker_id: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, labels, registry=self.registry)

        def gauge(name: str, doc: str, *labels: str) -> Gauge:
            return Gauge(name, doc, labels, registry=self.registry)

        def histogram(name: str, doc: str, *labels: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, labels, registry=self.registry, buckets=buckets)

        self.info = gauge("presence_worker_info", "Identity of this worker", "worker")
        self.info.labels(worker=worker_id).set(1)
        self.activity_calls = counter(
            "presence_activity_calls",
            "Activity calls received (REST, socket events, heartbeats)",
            "kind",
        )
        self.throttled_calls = counter(
            "presence_throttled_calls",
            "Activity calls that did not write because the subject was inside its window",
            "kind",
        )
        self.local_cache_hits = counter(
            "presence_throttle_local_hits",
            "Activity calls answered by this worker's cache without a Redis round trip",
        )
        self.db_updates = counter("presence_db_updates", "lastActiveAt writes by result", "result")
        self.throttle_cache_size = gauge(
            "presence_throttle_cache_size", "Subjects in this worker's throttle cache"
        )
        self.cluster_windows = gauge(
            "presence_throttle_windows",
            "Subjects inside a throttle window, cluster-wide (read at scrape time)",
        )
        self.connections = gauge(
            "presence_connections", "Live Socket.IO connections on this worker"
        )
        self.online_subjects = gauge(
            "presence_online_subjects", "Online subjects cluster-wide (read at scrape time)", "kind"
        )
        self.status_changes = counter(
            "presence_status_changes", "Presence transitions decided by this worker", "to"
        )
        self.broadcasts = counter(
            "presence_broadcasts", "user:status events emitted by this worker"
        )
        self.leader = gauge("presence_leader", "1 while this worker holds the maintenance lease")
        self.leader_epoch = gauge(
            "presence_leader_epoch", "Fencing epoch of this worker's last lease grant"
        )
        self.sweeps = counter("presence_maintenance_runs", "Maintenance sweeps run by this worker")
        self.sweep_duration = histogram(
            "presence_maintenance_duration_seconds",
            "Duration of one maintenance sweep",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.marked_offline = counter(
            "presence_maintenance_marked_offline",
            "Subjects the sweep took offline, by why",
            "reason",
        )
        self.fenced_rejections = counter(
            "presence_fenced_write_rejected",
            "Maintenance writes refused because a newer leader epoch exists",
        )
        self.workers_alive = gauge(
            "presence_workers_alive", "Live workers seen in the registry (read at scrape time)"
        )
        self.task_restarts = counter(
            "presence_task_restarts",
            "Background loops restarted after they crashed or returned, by task",
            "task",
        )
        self.redis_errors = counter(
            "presence_redis_errors", "Redis operations that failed", "operation"
        )
        self.mongo_errors = counter(
            "presence_mongo_errors", "MongoDB operations that failed", "operation"
        )
        self.write_behind_queued = gauge(
            "presence_write_behind_queued",
            "Online flags and lastSeen values waiting for this worker's next database bulk",
        )
        self.write_behind_written = counter(
            "presence_write_behind_written",
            "Online flags and lastSeen values this worker wrote to the database in bulks",
        )
        self.profile_cache = counter(
            "presence_profile_cache",
            "Subject profiles (name, manual status, conversations) asked of this worker's "
            "cache, by result (hit, miss)",
            "result",
        )
        self.profile_cache_size = gauge(
            "presence_profile_cache_size", "Subject profiles in this worker's cache"
        )
        self.auth_failures = counter(
            "presence_auth_failures", "Refused credentials by reason", "reason"
        )
        self.socket_events = counter(
            "presence_socket_events",
            "Socket.IO events received, by event and outcome",
            "event",
            "outcome",
        )
        self.socket_refusals = counter(
            "presence_socket_refusals",
            "Socket.IO connections refused or dropped, by reason",
            "reason",
        )
        self.pubsub_deaf = gauge(
            "presence_pubsub_deaf",
            "1 while this worker has not heard its own pub/sub probe recently",
        )
        self.pubsub_deaf_episodes = counter(
            "presence_pubsub_deaf_episodes", "Times this worker's pub/sub listener went deaf"
        )
        self.pubsub_received = counter(
            "presence_pubsub_received",
            "Socket.IO queue messages this worker's listener received (its own probes aside)",
        )
        self.pubsub_published = counter(
            "presence_pubsub_published",
            "Socket.IO queue messages this worker published, one per channel (probes aside)",
        )
        self.pubsub_rooms = gauge(
            "presence_pubsub_subscribed_rooms",
            "Rooms this worker is subscribed to: it has a local socket in each (routed queue)",
        )
        self.pubsub_channels = gauge(
            "presence_pubsub_channels", "Pub/sub channels this worker's listener is subscribed to"
        )
        self.pubsub_probe_age = gauge(
            "presence_pubsub_last_probe_age_seconds",
            "Seconds since this worker last heard its own pub/sub probe",
        )
        self.events_appended = counter(
            "presence_events_appended",
            "Transitions this worker appended to the change feed (the Redis stream)",
        )
        self.events_dropped = counter(
            "presence_events_dropped",
            "Transitions this worker could not append to the change feed before its backlog "
            "was full (Redis away for long)",
        )
        self.resyncs = counter(
            "presence_resyncs",
            "Times this worker resent every socket its snapshot after its pub/sub listener "
            "heard again",
        )
        self.resync_sockets = counter(
            "presence_resync_sockets", "Resync snapshots this worker sent (one per socket)"
        )
        self.jwks_fetches = counter(
            "presence_jwks_fetches",
            "Fetches of the identity provider's key set (PRESENCE_JWT_JWKS_URL), by outcome",
            "outcome",
        )
        self.webhook_delivered = counter(
            "presence_webhook_delivered", "Events this worker delivered to the webhook (2xx)"
        )
        self.webhook_failed = counter(
            "presence_webhook_failed",
            "Webhook deliveries that failed (refused, timed out, unreachable); each is retried",
        )
        self.webhook_retrying = gauge(
            "presence_webhook_retrying", "Events this worker is retrying right now"
        )
        self.webhook_lag = gauge(
            "presence_webhook_lag",
            "Events of the feed not yet delivered to the webhook (cluster-wide, as this worker "
            "last read it)",
        )
        self.http_duration = histogram(
            "presence_http_request_duration_seconds",
            "HTTP request duration",
            "route",
            "method",
            "status",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
