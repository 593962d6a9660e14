"""B12: presence side by side with Centrifugo v6 (SPEC §13), in one run, repetitions
interleaved (the order of the two systems flips every repetition), with the same Node clients,
the same Redis, two server processes per system pinned to one core (Centrifugo with
``GOMAXPROCS=1``), the clients on the other core."""

from __future__ import annotations

import http.client
import json
import statistics
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from bench import peer
from bench.harness import Account, Stack, Worker
from bench.report import Result
from bench.stats import quantile, slope

KEY = "b12"
TITLE = "Side by side with Centrifugo"
QUESTION = (
    "Two nodes of each system on one core (Centrifugo v6.9.1 with GOMAXPROCS=1, its Redis "
    "engine on the same Redis), clients in one Node process on the other core (the stock "
    "socket.io-client 4.8.4 for presence, `centrifuge` 5.8.0 for Centrifugo). Groups are 50 "
    "users and a watcher. Measured for both systems in every repetition: KiB per idle "
    "connection (slope over 1 000 / 3 000 / 5 000 connections on one node), the time and the "
    "server CPU of 1 000 connects with 50 in flight (presence: authenticated and snapshotted "
    "with a 50-member group; Centrifugo: connected and subscribed to the group's channel with "
    "presence and join/leave), cross-node join latency (a member connecting on node A at 4/s, "
    "then at 20/s, heard by the watcher on node B), cross-node leave latency at 4/s (grace 0), "
    "and the presence read of a 201-member room (200 connected, p50 of 200 sequential calls: "
    "`GET /api/conversations/{id}/presence`, and Centrifugo's server API `presence`). Goals "
    "(presence ÷ Centrifugo): connect rate ≥ 0.5, join p99 ≤ 2, leave p99 ≤ 3, presence read "
    "p50 ≤ 3, memory per connection ≤ 1."
)

SYSTEMS = ("presence", "centrifugo")
GROUP = 50
CROWD = 1000
STEPS = (1000, 3000, 5000)
READS = 200


class Population:
    """The same users for both systems: a crowd of 1 000 in groups of 50, a join group of 50
    and its watcher, a room of 200 and its reader."""

    def __init__(self, stack: Stack) -> None:
        accounts = stack.seed_users(CROWD + GROUP + 1 + 200 + 1)
        self.crowd = accounts[:CROWD]
        self.members = accounts[CROWD : CROWD + GROUP]
        self.watcher = accounts[CROWD + GROUP]
        self.room = accounts[CROWD + GROUP + 1 : CROWD + GROUP + 201]
        self.reader = accounts[-1]
        self.crowd_groups = [
            stack.conversation([a.id for a in self.crowd[i : i + GROUP]], f"crowd{i // GROUP}")
            for i in range(0, CROWD, GROUP)
        ]
        self.join_group = stack.conversation([self.watcher.id] + [a.id for a in self.members])
        self.room_id = stack.conversation([self.reader.id] + [a.id for a in self.room], "room")
        self.secret = stack.jwt_secret

    def tokens(self, system: str, accounts: list[Account]) -> list[str]:
        if system == "presence":
            return [a.token for a in accounts]
        return [peer.centrifugo_token(self.secret, a.id) for a in accounts]

    def crowd_channels(self, count: int) -> list[str]:
        """The channel of each crowd connection (its user's group), tabs repeating users."""
        return [f"{peer.NAMESPACE}:{self.crowd_groups[(i % CROWD) // GROUP]}" for i in range(count)]


class System:
    """Two nodes of one system and how its clients reach them."""

    def __init__(self, name: str, stack: Stack, population: Population) -> None:
        self.name = name
        self.stack = stack
        self.population = population
        if name == "presence":
            self.nodes = stack.start_workers(2, offline_grace_s=0)
        else:
            self.nodes = [
                peer.start_centrifugo(
                    stack.run_dir, f"centrifugo{i}", stack.redis_url, population.secret
                )
                for i in range(2)
            ]

    def url(self, node: Worker) -> str:
        if self.name == "presence":
            return node.url
        return f"ws://127.0.0.1:{node.port}/connection/websocket"

    def open_on_a(
        self, clients: peer.PeerClients, group: str, tokens: list[str], channels: list[str]
    ) -> dict[str, Any]:
        """One client per token on node A, 50 opening at a time; answers when all are ready."""
        return clients.command(
            "opened",
            cmd="open",
            group=group,
            system=self.name,
            urls=[self.url(self.nodes[0])],
            tokens=tokens,
            channels=channels,
            concurrency=50,
        )

    def channel(self, conversation_id: str) -> str:
        return f"{peer.NAMESPACE}:{conversation_id}"

    def read_presence(self) -> Callable[[], int]:
        """One presence read of the room from node B; returns how many it lists online."""
        node = self.nodes[1]
        conn = http.client.HTTPConnection("127.0.0.1", urlsplit(node.url).port, timeout=10)
        if self.name == "presence":
            path = f"/api/conversations/{self.population.room_id}/presence"
            headers = {"Authorization": f"Bearer {self.population.reader.token}"}

            def read() -> int:
                conn.request("GET", path, headers=headers)
                body = json.loads(conn.getresponse().read())
                online: int = body["data"]["online"]
                return online

            return read
        payload = json.dumps({"channel": self.channel(self.population.room_id)})
        api_headers = {"X-API-Key": peer.API_KEY, "Content-Type": "application/json"}

        def read_api() -> int:
            conn.request("POST", "/api/presence", body=payload, headers=api_headers)
            return len(json.loads(conn.getresponse().read())["result"]["presence"])

        return read_api

    def stop(self) -> None:
        if self.name == "presence":
            self.stack.stop_workers()
        else:
            for node in self.nodes:
                node.stop()
        self.stack.redis().flushall()


def _settled_rss(node: Worker) -> int:
    """RSS once the node has finished with the last connections (two samples agree)."""
    previous = -1
    for _ in range(20):
        time.sleep(1.0)
        rss = node.rss_kib()
        if abs(rss - previous) < 256:
            return rss
        previous = rss
    return node.rss_kib()


def _idle_cpu(node: Worker, seconds: float = 1.0) -> float:
    before = node.cpu_seconds()
    time.sleep(seconds)
    return node.cpu_seconds() - before


def measure(system: System, clients: peer.PeerClients) -> dict[str, Any]:
    pop, a, b = system.population, system.nodes[0], system.nodes[1]
    out: dict[str, Any] = {"system": system.name}
    # Join and leave across nodes: members on A, the watcher on B.
    watched = clients.command(
        "watching",
        cmd="watch",
        system=system.name,
        url=system.url(b),
        token=system.population.tokens(system.name, [pop.watcher])[0],
        channel=system.channel(pop.join_group),
    )
    assert watched["event"] == "watching"
    member_tokens = pop.tokens(system.name, pop.members)
    ids = [m.id for m in pop.members]
    for rate in (4, 20):
        joined = clients.command(
            "joined",
            cmd="joins",
            group="members",
            system=system.name,
            url=system.url(a),
            tokens=member_tokens,
            ids=ids,
            channel=system.channel(pop.join_group),
            rate=rate,
        )
        left = clients.command("left", cmd="leaves", group="members", ids=ids, rate=rate)
        for kind, answer in (("join", joined), ("leave", left)):
            heard = [ms for ms in answer["ms"] if ms is not None]
            out[f"{kind}_{rate}_missed"] = len(answer["ms"]) - len(heard)
            out[f"{kind}_{rate}_p50_ms"] = quantile(heard, 50)
            out[f"{kind}_{rate}_p99_ms"] = quantile(heard, 99)
    clients.command("closed", cmd="close", group="watchers")

    # The presence read of a 201-member room with 200 connected.
    room_channels = [system.channel(pop.room_id)] * len(pop.room)
    opened = system.open_on_a(clients, "room", pop.tokens(system.name, pop.room), room_channels)
    assert opened["failed"] == 0, opened
    read = system.read_presence()
    listed = read()
    assert listed >= len(pop.room), (system.name, listed)
    took = []
    for _ in range(READS):
        started = time.perf_counter()
        read()
        took.append((time.perf_counter() - started) * 1000)
    out["presence_read_p50_ms"] = quantile(took, 50)
    out["presence_read_p99_ms"] = quantile(took, 99)
    clients.command("closed", cmd="close", group="room")

    # Connects, then idle connections held on node A.
    base_rss = _settled_rss(a)
    idle = _idle_cpu(a)
    tokens = pop.tokens(system.name, pop.crowd)
    points: list[tuple[float, float]] = []
    held = 0
    for step in STEPS:
        count = step - held
        cpu_before, window_started = a.cpu_seconds(), time.monotonic()
        opened = system.open_on_a(
            clients,
            "crowd",
            [tokens[i % CROWD] for i in range(held, step)],
            pop.crowd_channels(step)[held:],
        )
        rss = _settled_rss(a)
        if held == 0:
            # The connects' CPU, with what the node kept doing for them while RSS settled,
            # less the node's idle CPU over the same time.
            window_s = time.monotonic() - window_started
            cpu = a.cpu_seconds() - cpu_before - idle * window_s
            out["connect_seconds"] = opened["seconds"]
            out["connect_failed"] = opened["failed"]
            out["cpu_ms_per_connect"] = cpu * 1000 / count
        held += opened["ok"]
        points.append((float(held), float(rss)))
    out["held"] = held
    out["rss_base_kib"] = base_rss
    out["kib_per_connection"] = slope(points)
    out["rss_points"] = points
    clients.command("closed", cmd="close", group="crowd")
    return out


ROWS: list[tuple[str, str, str, str, Callable[[float], bool] | None]] = [
    # (key, label, unit, goal, met(ratio)) with ratio = presence ÷ Centrifugo
    ("kib_per_connection", "KiB per idle connection (slope)", "KiB", "≤ 1", lambda r: r <= 1),
    ("connect_seconds", "1 000 connects, 50 in flight: time", "s", "≤ 2", lambda r: r <= 2),
    ("cpu_ms_per_connect", "server CPU per connect", "ms", "≤ 3", lambda r: r <= 3),
    ("join_4_p50_ms", "cross-node join p50 at 4/s", "ms", "", None),
    ("join_4_p99_ms", "cross-node join p99 at 4/s", "ms", "≤ 2", lambda r: r <= 2),
    ("join_20_p50_ms", "cross-node join p50 at 20/s", "ms", "", None),
    ("join_20_p99_ms", "cross-node join p99 at 20/s", "ms", "≤ 2", lambda r: r <= 2),
    ("leave_4_p50_ms", "cross-node leave p50 at 4/s (grace 0)", "ms", "", None),
    ("leave_4_p99_ms", "cross-node leave p99 at 4/s (grace 0)", "ms", "≤ 3", lambda r: r <= 3),
    ("leave_20_p99_ms", "cross-node leave p99 at 20/s (grace 0)", "ms", "", None),
    (
        "presence_read_p50_ms",
        "presence read of a 201-member room, p50",
        "ms",
        "≤ 3",
        lambda r: r <= 3,
    ),
]


def run(stack: Stack, quick: bool) -> Result:
    repetitions = 1 if quick else 2
    result = Result.begin(
        KEY,
        TITLE,
        QUESTION,
        quick,
        settings={
            "repetitions": repetitions,
            "group": GROUP,
            "steps": list(STEPS),
            "reads": READS,
            "centrifugo": peer.CENTRIFUGO_VERSION,
        },
    )
    if not quick:
        result.command = "make bench-peer"
    peer.ensure_built()
    population = Population(stack)
    clients = peer.PeerClients()
    try:
        for repetition in range(repetitions):
            order = SYSTEMS if repetition % 2 == 0 else SYSTEMS[::-1]
            for name in order:
                system = System(name, stack, population)
                try:
                    measured = measure(system, clients)
                finally:
                    system.stop()
                measured["repetition"] = repetition
                result.repetitions.append(measured)
    finally:
        clients.close()
    _report(result)
    return result


def _report(result: Result) -> None:
    by_rep: dict[int, dict[str, dict[str, Any]]] = {}
    for rep in result.repetitions:
        by_rep.setdefault(rep["repetition"], {})[rep["system"]] = rep
    pairs = [r for r in by_rep.values() if set(r) == set(SYSTEMS)]
    for key, label, unit, goal, met in ROWS:
        for name in SYSTEMS:
            values = [float(p[name][key]) for p in pairs]
            result.metric(f"{label}: {name}", unit, values)
        ratios = [float(p["presence"][key]) / float(p["centrifugo"][key]) for p in pairs]
        ratio = statistics.median(ratios) if ratios else float("nan")
        result.metric(
            f"{label}: presence ÷ Centrifugo",
            "ratio",
            ratios,
            kind="ratio",
            target=goal,
            met=None if met is None else met(ratio),
        )
    missed = sum(int(rep[k]) for rep in result.repetitions for k in rep if k.endswith("_missed"))
    failed = sum(int(rep["connect_failed"]) for rep in result.repetitions)
    for name, count in (
        ("joins and leaves never heard, both systems", missed),
        ("failed connects, both systems", failed),
    ):
        result.metric(
            name, "count", [float(count)], kind="count", target="0", met=count == 0, gate=True
        )
    result.notes += [
        "Centrifugo sends a join and a leave per connection, presence one `user:status` per "
        "user transition (here every member has one connection, so both send one).",
        "Centrifugo's RSS includes the Go heap's headroom (GOGC=100): its slope is an upper "
        "bound of what a connection holds.",
        "Presence's connect includes the snapshot of the caller's conversations (50 members) "
        "and the announcement of the user coming online to its group; Centrifugo's includes "
        "the subscription with presence and the join push to the group's subscribers.",
        "The connect-time goal is stated as a rate (≥ 0.5× Centrifugo's), here as its "
        "inverse: time ≤ 2× Centrifugo's.",
    ]
