"""Settings: defaults, fractions, and one clear line naming the bad variable."""

from __future__ import annotations

import pytest

from presence.cli import _parser
from presence.config import ConfigError, load_settings
from presence.redis_url import RedisConfig, RedisMode, parse_redis_url
from scripts.cluster import admin_create_args

SECRET = "x" * 32
SERVICES = {
    "PRESENCE_REDIS_URL": "redis://localhost:6379/0",
    "PRESENCE_MONGO_URL": "mongodb://localhost:27017",
    "PRESENCE_JWT_SECRET": SECRET,
}


def test_no_service_urls_means_embedded_mode_with_spec_defaults() -> None:
    s = load_settings({})
    assert s.embedded
    assert (s.host, s.port) == ("0.0.0.0", 3000)
    assert s.throttle_interval_s == 60
    assert s.maintenance_interval_s == 15
    assert s.offline_threshold_s == 300
    assert s.offline_grace_s == 5
    assert (s.cache_cleanup_interval_s, s.cache_max_age_s) == (300, 600)
    assert (s.leader_ttl_s, s.worker_ttl_s) == (15, 15)
    assert (s.ping_interval_s, s.ping_timeout_s) == (25, 20)
    assert s.max_connections == 20000
    assert s.mongo_max_batch == 100
    assert (s.auth_cache_size, s.track_requests) == (10000, True)
    assert s.cors_origins == ("*",)
    assert (s.log_level, s.log_format) == ("INFO", "json")


def test_durations_accept_fractions_so_tests_can_shrink_timers() -> None:
    s = load_settings(
        {**SERVICES, "PRESENCE_THROTTLE_INTERVAL_S": "0.5", "PRESENCE_OFFLINE_THRESHOLD_S": "2"}
    )
    assert s.throttle_interval_s == 0.5
    assert s.offline_threshold_s == 2.0
    assert not s.embedded
    assert s.cors_origins == ()


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"PRESENCE_PORT": "http"}, "PRESENCE_PORT"),
        ({"PRESENCE_PORT": "70000"}, "PRESENCE_PORT"),
        ({"PRESENCE_THROTTLE_INTERVAL_S": "soon"}, "PRESENCE_THROTTLE_INTERVAL_S"),
        ({"PRESENCE_THROTTLE_INTERVAL_S": "0"}, "PRESENCE_THROTTLE_INTERVAL_S"),
        ({"PRESENCE_OFFLINE_THRESHOLD_S": "-1"}, "PRESENCE_OFFLINE_THRESHOLD_S"),
        ({"PRESENCE_OFFLINE_THRESHOLD_S": "nan"}, "PRESENCE_OFFLINE_THRESHOLD_S"),
        ({"PRESENCE_OFFLINE_THRESHOLD_S": "30"}, "PRESENCE_OFFLINE_THRESHOLD_S"),
        ({"PRESENCE_MAX_CONNECTIONS": "0"}, "PRESENCE_MAX_CONNECTIONS"),
        ({"PRESENCE_MONGO_MAX_BATCH": "0"}, "PRESENCE_MONGO_MAX_BATCH"),
        ({"PRESENCE_MONGO_MAX_BATCH": "many"}, "PRESENCE_MONGO_MAX_BATCH"),
        ({"PRESENCE_AUTH_CACHE_SIZE": "-1"}, "PRESENCE_AUTH_CACHE_SIZE"),
        ({"PRESENCE_WRITE_BEHIND_S": "0"}, "PRESENCE_WRITE_BEHIND_S"),
        ({"PRESENCE_WRITE_BEHIND_S": "1.5"}, "PRESENCE_WRITE_BEHIND_S"),
        ({"PRESENCE_PROFILE_CACHE_SIZE": "-1"}, "PRESENCE_PROFILE_CACHE_SIZE"),
        ({"PRESENCE_PROFILE_CACHE_TTL_S": "-1"}, "PRESENCE_PROFILE_CACHE_TTL_S"),
        ({"PRESENCE_TRACK_REQUESTS": "maybe"}, "PRESENCE_TRACK_REQUESTS"),
        ({"PRESENCE_LOG_LEVEL": "LOUD"}, "PRESENCE_LOG_LEVEL"),
        ({"PRESENCE_LOG_FORMAT": "xml"}, "PRESENCE_LOG_FORMAT"),
        ({"PRESENCE_MESSAGE_QUEUE": "kafka"}, "PRESENCE_MESSAGE_QUEUE"),
        ({"PRESENCE_JWT_SECRET": "short"}, "PRESENCE_JWT_SECRET"),
        ({"PRESENCE_REDIS_URL": "localhost:6379"}, "PRESENCE_REDIS_URL"),
        ({"PRESENCE_REDIS_URL": "redis+sentinel://s1:26379"}, "PRESENCE_REDIS_URL"),
        ({"PRESENCE_REDIS_URL": "redis+sentinel://s1/mymaster/zero"}, "PRESENCE_REDIS_URL"),
        ({"PRESENCE_REDIS_URL": "redis+sentinel://s1:port/mymaster"}, "PRESENCE_REDIS_URL"),
        ({"PRESENCE_REDIS_URL": "redis+cluster://n1:7000/0"}, "PRESENCE_REDIS_URL"),
        ({"PRESENCE_REDIS_BUCKETS": "0"}, "PRESENCE_REDIS_BUCKETS"),
        ({"PRESENCE_MONGO_URL": "http://mongo"}, "PRESENCE_MONGO_URL"),
        ({"PRESENCE_SERVICE_RATE_LIMIT": "0"}, "PRESENCE_SERVICE_RATE_LIMIT"),
        ({"PRESENCE_JWT_JWKS_URL": "login.test/jwks"}, "PRESENCE_JWT_JWKS_URL"),
        ({"PRESENCE_JWT_PROVISION": "true"}, "PRESENCE_JWT_PROVISION"),
        ({"PRESENCE_JWT_SUBJECT_CLAIM": "user id"}, "PRESENCE_JWT_SUBJECT_CLAIM"),
        ({"PRESENCE_JWT_JWKS_TTL_S": "0"}, "PRESENCE_JWT_JWKS_TTL_S"),
        ({"PRESENCE_EVENTS_MAXLEN": "0"}, "PRESENCE_EVENTS_MAXLEN"),
        ({"PRESENCE_EVENTS_WAIT_S": "-1"}, "PRESENCE_EVENTS_WAIT_S"),
        ({"PRESENCE_WEBHOOK_URL": "http://hooks.test/x"}, "PRESENCE_WEBHOOK_SECRET"),
        ({"PRESENCE_WEBHOOK_SECRET": "s" * 32}, "PRESENCE_WEBHOOK_URL"),
        (
            {"PRESENCE_WEBHOOK_URL": "hooks.test", "PRESENCE_WEBHOOK_SECRET": "s" * 32},
            "PRESENCE_WEBHOOK_URL",
        ),
        (
            {"PRESENCE_WEBHOOK_URL": "http://hooks.test", "PRESENCE_WEBHOOK_SECRET": "s" * 31},
            "PRESENCE_WEBHOOK_SECRET",
        ),
        (
            {
                "PRESENCE_WEBHOOK_URL": "http://h.test",
                "PRESENCE_WEBHOOK_SECRET": "s" * 32,
                "PRESENCE_WEBHOOK_CLAIM_AFTER_S": "0",
            },
            "PRESENCE_WEBHOOK_CLAIM_AFTER_S",
        ),
    ],
)
def test_a_bad_value_names_its_variable_in_one_line(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**SERVICES, **env})
    message = str(caught.value)
    assert message.startswith(variable + ":")
    assert "\n" not in message


def test_switches_read_the_usual_spellings_of_true_and_false() -> None:
    off = load_settings({"PRESENCE_TRACK_REQUESTS": "off", "PRESENCE_AUTH_CACHE_SIZE": "0"})
    assert (off.track_requests, off.auth_cache_size) == (False, 0)
    assert load_settings({"PRESENCE_TRACK_REQUESTS": "TRUE"}).track_requests


def test_the_write_behind_and_the_profile_cache_are_set_by_their_variables() -> None:
    default = load_settings({})
    assert (default.write_behind_s, default.profile_cache_size) == (0.25, 100_000)
    assert default.profile_cache_ttl_s == 60.0
    tuned = load_settings(
        {
            "PRESENCE_WRITE_BEHIND_S": "1",
            "PRESENCE_PROFILE_CACHE_SIZE": "0",
            "PRESENCE_PROFILE_CACHE_TTL_S": "0",
        }
    )
    assert (tuned.write_behind_s, tuned.profile_cache_size, tuned.profile_cache_ttl_s) == (1, 0, 0)


def test_the_service_api_feed_and_webhooks_are_set_by_their_variables() -> None:
    default = load_settings({})
    assert (default.service_rate_limit, default.events_maxlen, default.events_wait_s) == (
        100,
        100_000,
        25.0,
    )
    assert (default.webhook_url, default.webhook_secret) == (None, "")
    tuned = load_settings(
        {
            "PRESENCE_SERVICE_RATE_LIMIT": "7",
            "PRESENCE_EVENTS_MAXLEN": "50",
            "PRESENCE_EVENTS_WAIT_S": "0",
            "PRESENCE_WEBHOOK_URL": "https://hooks.test/presence",
            "PRESENCE_WEBHOOK_SECRET": "s" * 32,
            "PRESENCE_WEBHOOK_TIMEOUT_S": "2",
            "PRESENCE_WEBHOOK_MAX_BACKOFF_S": "10",
            "PRESENCE_WEBHOOK_CLAIM_AFTER_S": "3",
        }
    )
    assert (tuned.service_rate_limit, tuned.events_maxlen, tuned.events_wait_s) == (7, 50, 0)
    assert tuned.webhook_url == "https://hooks.test/presence"
    assert (tuned.webhook_timeout_s, tuned.webhook_max_backoff_s) == (2, 10)
    assert tuned.webhook_claim_after_s == 3
    assert "s" * 32 not in repr(tuned)


def test_the_platform_token_settings_are_read_from_their_variables() -> None:
    default = load_settings({})
    assert (default.jwt_jwks_url, default.jwt_issuer, default.jwt_audience) == (None, None, None)
    assert (default.jwt_subject_claim, default.jwt_name_claim, default.jwt_provision) == (
        "sub",
        "name",
        False,
    )
    tuned = load_settings(
        {
            **SERVICES,
            "PRESENCE_JWT_JWKS_URL": "https://login.platform.test/.well-known/jwks.json",
            "PRESENCE_JWT_ISSUER": "https://login.platform.test",
            "PRESENCE_JWT_AUDIENCE": "presence",
            "PRESENCE_JWT_SUBJECT_CLAIM": "uid",
            "PRESENCE_JWT_NAME_CLAIM": "preferred_username",
            "PRESENCE_JWT_PROVISION": "true",
            "PRESENCE_JWT_JWKS_TTL_S": "60",
            "PRESENCE_JWT_JWKS_REFRESH_S": "0",
        }
    )
    assert tuned.jwt_jwks_url == "https://login.platform.test/.well-known/jwks.json"
    assert (tuned.jwt_issuer, tuned.jwt_audience) == ("https://login.platform.test", "presence")
    assert (tuned.jwt_subject_claim, tuned.jwt_name_claim) == ("uid", "preferred_username")
    assert (tuned.jwt_provision, tuned.jwt_jwks_ttl_s, tuned.jwt_jwks_refresh_s) == (True, 60, 0)


def test_one_service_url_without_the_other_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^PRESENCE_MONGO_URL:"):
        load_settings({"PRESENCE_REDIS_URL": "redis://localhost"})


def test_a_secret_is_required_outside_embedded_mode() -> None:
    env = {k: v for k, v in SERVICES.items() if k != "PRESENCE_JWT_SECRET"}
    with pytest.raises(ConfigError, match=r"^PRESENCE_JWT_SECRET: required"):
        load_settings(env)


def test_repr_hides_the_secret_and_url_passwords() -> None:
    s = load_settings({**SERVICES, "PRESENCE_REDIS_URL": "redis://:hunter2@redis:6379/0"})
    shown = repr(s)
    assert SECRET not in shown
    assert "hunter2" not in shown
    assert "redis:6379" in shown


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://localhost:6379/0", RedisConfig(RedisMode.STANDALONE, "redis://localhost:6379/0")),
        ("rediss://:pw@r:6380/2", RedisConfig(RedisMode.STANDALONE, "rediss://:pw@r:6380/2")),
        (
            "unix:///run/redis.sock?db=1",
            RedisConfig(RedisMode.STANDALONE, "unix:///run/redis.sock?db=1"),
        ),
        (
            "redis+sentinel://:s3cret@s1:26379,s2,s3:26380/mymaster/3",
            RedisConfig(
                RedisMode.SENTINEL,
                "redis+sentinel://:s3cret@s1:26379,s2,s3:26380/mymaster/3",
                (("s1", 26379), ("s2", 26379), ("s3", 26380)),
                "mymaster",
                3,
                None,
                "s3cret",
            ),
        ),
        (
            "redis+sentinel://app:pw@s1/mymaster",
            RedisConfig(
                RedisMode.SENTINEL,
                "redis+sentinel://app:pw@s1/mymaster",
                (("s1", 26379),),
                "mymaster",
                0,
                "app",
                "pw",
            ),
        ),
        (
            "redis+cluster://n1:7000,n2:7001",
            RedisConfig(
                RedisMode.CLUSTER, "redis+cluster://n1:7000,n2:7001", (("n1", 7000), ("n2", 7001))
            ),
        ),
    ],
)
def test_every_redis_url_form_parses_into_one_configuration(
    url: str, expected: RedisConfig
) -> None:
    assert parse_redis_url(url) == expected


def test_cluster_mode_spreads_the_collections_over_sixteen_buckets_unless_told() -> None:
    cluster = {**SERVICES, "PRESENCE_REDIS_URL": "redis+cluster://n1:7000"}
    assert load_settings(cluster).redis_buckets == 16
    assert load_settings({**cluster, "PRESENCE_REDIS_BUCKETS": "64"}).redis_buckets == 64
    assert load_settings(SERVICES).redis_buckets == 1


def test_the_routed_message_queue_is_the_default_and_broadcast_a_choice() -> None:
    assert load_settings(SERVICES).message_queue == "routed"
    chosen = load_settings({**SERVICES, "PRESENCE_MESSAGE_QUEUE": "broadcast"})
    assert chosen.message_queue == "broadcast"


def test_make_cluster_creates_its_admin_whatever_its_random_password_starts_with() -> None:
    args = _parser().parse_args(admin_create_args("-UJJ5msxorB2advh"))
    assert args.password == "-UJJ5msxorB2advh"
