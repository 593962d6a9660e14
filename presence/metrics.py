"""Every Prometheus collector, defined once, in a registry owned by the app (no globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, worker_id: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.info = Gauge("presence_worker_info", "Identity of this worker", ["worker"], registry=r)
        self.info.labels(worker=worker_id).set(1)
        self.activity_calls = Counter(
            "presence_activity_calls",
            "Activity calls received (REST, socket events, heartbeats)",
            ["kind"],
            registry=r,
        )
        self.throttled_calls = Counter(
            "presence_throttled_calls",
            "Activity calls that did not write because the subject was inside its window",
            ["kind"],
            registry=r,
        )
        self.local_cache_hits = Counter(
            "presence_throttle_local_hits",
            "Activity calls answered by this worker's cache without a Redis round trip",
            registry=r,
        )
        self.db_updates = Counter(
            "presence_db_updates", "lastActiveAt writes by result", ["result"], registry=r
        )
        self.throttle_cache_size = Gauge(
            "presence_throttle_cache_size", "Subjects in this worker's throttle cache", registry=r
        )
        self.cluster_windows = Gauge(
            "presence_throttle_windows",
            "Subjects inside a throttle window, cluster-wide (read at scrape time)",
            registry=r,
        )
        self.connections = Gauge(
            "presence_connections", "Live Socket.IO connections on this worker", registry=r
        )
        self.online_subjects = Gauge(
            "presence_online_subjects",
            "Online subjects cluster-wide (read at scrape time)",
            ["kind"],
            registry=r,
        )
        self.status_changes = Counter(
            "presence_status_changes",
            "Presence transitions decided by this worker",
            ["to"],
            registry=r,
        )
        self.broadcasts = Counter(
            "presence_broadcasts", "user:status events emitted by this worker", registry=r
        )
        self.leader = Gauge(
            "presence_leader", "1 while this worker holds the maintenance lease", registry=r
        )
        self.leader_epoch = Gauge(
            "presence_leader_epoch",
            "Fencing epoch of this worker's last lease grant",
            registry=r,
        )
        self.sweeps = Counter(
            "presence_maintenance_runs", "Maintenance sweeps run by this worker", registry=r
        )
        self.sweep_duration = Histogram(
            "presence_maintenance_duration_seconds",
            "Duration of one maintenance sweep",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.marked_offline = Counter(
            "presence_maintenance_marked_offline",
            "Subjects the sweep took offline, by why",
            ["reason"],
            registry=r,
        )
        self.fenced_rejections = Counter(
            "presence_fenced_write_rejected",
            "Maintenance writes refused because a newer leader epoch exists",
            registry=r,
        )
        self.workers_alive = Gauge(
            "presence_workers_alive",
            "Live workers seen in the registry (read at scrape time)",
            registry=r,
        )
        self.task_restarts = Counter(
            "presence_task_restarts",
            "Background loops restarted after they crashed or returned, by task",
            ["task"],
            registry=r,
        )
        self.redis_errors = Counter(
            "presence_redis_errors", "Redis operations that failed", ["operation"], registry=r
        )
        self.mongo_errors = Counter(
            "presence_mongo_errors", "MongoDB operations that failed", ["operation"], registry=r
        )
        self.auth_failures = Counter(
            "presence_auth_failures", "Refused credentials by reason", ["reason"], registry=r
        )
        self.socket_events = Counter(
            "presence_socket_events",
            "Socket.IO events received, by event and outcome",
            ["event", "outcome"],
            registry=r,
        )
        self.socket_refusals = Counter(
            "presence_socket_refusals",
            "Socket.IO connections refused or dropped, by reason",
            ["reason"],
            registry=r,
        )
        self.pubsub_deaf = Gauge(
            "presence_pubsub_deaf",
            "1 while this worker has not heard its own pub/sub probe recently",
            registry=r,
        )
        self.pubsub_deaf_episodes = Counter(
            "presence_pubsub_deaf_episodes",
            "Times this worker's pub/sub listener went deaf",
            registry=r,
        )
        self.pubsub_probe_age = Gauge(
            "presence_pubsub_last_probe_age_seconds",
            "Seconds since this worker last heard its own pub/sub probe",
            registry=r,
        )
        self.http_duration = Histogram(
            "presence_http_request_duration_seconds",
            "HTTP request duration",
            ["route", "method", "status"],
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
