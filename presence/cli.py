"""``presence serve``, ``presence user create``, ``presence token``, ``presence service-token``."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from collections.abc import Sequence

from aiohttp import web

from presence import collector
from presence.accounts import Accounts
from presence.api.context import COMPONENTS
from presence.app import create_app
from presence.auth.passwords import Passwords
from presence.auth.services import SCOPES, ServiceTokens, parse_scopes
from presence.auth.tokens import JwtCodec
from presence.clock import SystemClock
from presence.config import ConfigError, Settings, load_settings
from presence.domain import DomainError, Principal, Role, SubjectKind, SubjectRef, iso
from presence.logs import configure_logging
from presence.store.base import DuplicateError, StoreError
from presence.store.mongo import MongoStore

DEMO_ADMIN_EMAIL = "admin@presence.local"
DEMO_USER_EMAIL = "demo@presence.local"
SHUTDOWN_TIMEOUT_S = 5.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="presence", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run one worker (settings from PRESENCE_*)")
    serve.add_argument("--host", help="overrides PRESENCE_HOST")
    serve.add_argument("--port", type=int, help="overrides PRESENCE_PORT")
    serve.add_argument("--worker-id", help="overrides PRESENCE_WORKER_ID")

    user = commands.add_parser("user", help="manage accounts")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    create = user_commands.add_parser("create", help="create an account")
    create.add_argument("--email", required=True)
    create.add_argument("--password", required=True)
    create.add_argument("--username", required=True)
    create.add_argument("--admin", action="store_true", help="give the account the admin role")

    token = commands.add_parser("token", help="print a JWT for an account")
    token.add_argument("--email", required=True)

    service = commands.add_parser("service-token", help="manage the tokens of other services")
    service_commands = service.add_subparsers(dest="service_command", required=True)
    made = service_commands.add_parser("create", help="make a token (printed once)")
    made.add_argument("--name", required=True)
    made.add_argument(
        "--scopes", required=True, help=f"comma-separated, some of {', '.join(SCOPES)}"
    )
    service_commands.add_parser("list", help="name, scopes and creation time of every token")
    revoke = service_commands.add_parser("revoke", help="delete a token")
    revoke.add_argument("--name", required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = dict(os.environ)
    if args.command == "serve":
        for flag, name in (("host", "HOST"), ("port", "PORT"), ("worker_id", "WORKER_ID")):
            value = getattr(args, flag)
            if value is not None:
                env[f"PRESENCE_{name}"] = str(value)
    try:
        settings = load_settings(env)
    except ConfigError as exc:
        print(f"presence: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return _serve(settings)
    if settings.embedded or settings.mongo_url is None:
        print(
            "presence: account tools need PRESENCE_MONGO_URL and PRESENCE_JWT_SECRET "
            "(embedded mode keeps nothing)",
            file=sys.stderr,
        )
        return 2
    try:
        return asyncio.run(_account_command(args, settings))
    except DuplicateError:
        print("presence: that name is taken", file=sys.stderr)
        return 1
    except (DomainError, StoreError) as exc:
        print(f"presence: {exc}", file=sys.stderr)
        return 1


async def _account_command(args: argparse.Namespace, settings: Settings) -> int:
    assert settings.mongo_url is not None
    store = MongoStore.from_url(
        settings.mongo_url, settings.mongo_db, max_batch=settings.mongo_max_batch
    )
    try:
        await store.ensure_indexes()
        clock = SystemClock()
        accounts = Accounts(
            store, Passwords(), JwtCodec(settings.jwt_secret, settings.jwt_ttl_s, clock), clock
        )
        if args.command == "service-token":
            await _service_token_command(args, ServiceTokens(store, clock))
        elif args.command == "user":
            user = await accounts.create_user(
                username=args.username,
                email=args.email,
                password=args.password,
                role=Role.ADMIN if args.admin else Role.USER,
            )
            print(f"created {user.role.value} {user.email} (id {user.id})")
        else:
            print(await accounts.token_for(args.email))
    finally:
        await store.close()
    return 0


async def _service_token_command(args: argparse.Namespace, tokens: ServiceTokens) -> None:
    if args.service_command == "create":
        scopes = parse_scopes(args.scopes)
        print(await tokens.create(args.name, scopes))
        print(
            f"service token {args.name!r} ({', '.join(scopes)}): shown once, keep it secret",
            file=sys.stderr,
        )
    elif args.service_command == "list":
        for record in await tokens.list():
            print(f"{record.name}\t{','.join(record.scopes)}\t{iso(record.created_at)}")
    else:
        await tokens.revoke(args.name)
        print(f"revoked service token {args.name!r}")


def _serve(settings: Settings) -> int:
    configure_logging(settings.log_level, settings.log_format, settings.worker_id)
    collector.tune()
    app = create_app(settings)
    if settings.embedded:
        app.on_startup.append(_demo_accounts)
    app.on_startup.append(_freeze_startup_heap)  # last: after every component has started
    # Sockets are closed at the start of shutdown; a held long-poll must not delay exit for long.
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )
    return 0


async def _freeze_startup_heap(app: web.Application) -> None:
    collector.freeze_startup_heap()


async def _demo_accounts(app: web.Application) -> None:
    """Embedded mode: an admin and a demo user, printed for copy-paste."""
    c = app[COMPONENTS]
    password = secrets.token_urlsafe(9)
    admin = await c.accounts.create_user(
        username="admin", email=DEMO_ADMIN_EMAIL, password=password, role=Role.ADMIN
    )
    admin_token = await c.accounts.token_for(DEMO_ADMIN_EMAIL)
    demo = await c.accounts.register(username="demo", email=DEMO_USER_EMAIL, password=password)
    # One shared conversation, so two tabs signed in as admin and demo see each other.
    owner = Principal(SubjectRef(SubjectKind.USER, admin.id), admin.username, Role.ADMIN)
    await c.conversations.create(owner, "Welcome", [demo.user.id])
    url = f"http://localhost:{c.settings.port}"
    print(
        "\n".join(
            [
                "",
                "presence is running in EMBEDDED MODE: nothing is persisted, one worker only.",
                f"  console       {url}/   (sign in as demo in one tab, admin in another)",
                f"  API           {url}/api   (OpenAPI: {url}/openapi.json)",
                f"  health        {url}/healthz   metrics: {url}/metrics",
                f"  admin login   {DEMO_ADMIN_EMAIL} / {password}",
                f"  demo login    {DEMO_USER_EMAIL} / {password}",
                f"  admin token   {admin_token}",
                f"  try           curl -H 'Authorization: Bearer {demo.token}' {url}/api/users/me",
                "",
            ]
        ),
        flush=True,
    )
