"""A real identity provider for tests: an HTTP server publishing a JWKS, signing tokens with
RS256 or ES256 as a platform's login would, rotating its keys, and counting the fetches."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.support.httpserver import LocalHttpServer

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass
class SigningKey:
    kid: str
    private: PrivateKey

    @property
    def algorithm(self) -> str:
        return "RS256" if isinstance(self.private, rsa.RSAPrivateKey) else "ES256"

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def public_jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        encoded = (
            RSAAlgorithm.to_jwk(public)
            if isinstance(public, rsa.RSAPublicKey)
            else ECAlgorithm.to_jwk(public)
        )
        jwk: dict[str, Any] = json.loads(encoded)
        return {**jwk, "kid": self.kid, "use": "sig"}


def new_key(kind: str = "RSA") -> SigningKey:
    private: PrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "RSA"
        else ec.generate_private_key(ec.SECP256R1())
    )
    return SigningKey(f"{kind.lower()}-{uuid.uuid4().hex[:8]}", private)


class IdentityProvider(LocalHttpServer):
    issuer = "https://login.platform.test"
    audience = "presence"

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[SigningKey] = [new_key("RSA")]
        self.fetches = 0
        self.down = False

    @property
    def jwks_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    async def _jwks(self, request: web.Request) -> web.Response:
        self.fetches += 1
        if self.down:
            return web.Response(status=503)
        return web.json_response({"keys": [k.public_jwk() for k in self.keys]})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/.well-known/jwks.json", self._jwks)

    def rotate(self, kind: str = "RSA") -> SigningKey:
        """A new signing key first in the set; the old ones stay published."""
        key = new_key(kind)
        self.keys.insert(0, key)
        return key

    def token(
        self,
        subject: str,
        name: str | None = None,
        *,
        key: SigningKey | None = None,
        lifetime_s: float = 600,
        **claims: Any,
    ) -> str:
        signer = key or self.keys[0]
        now = int(time.time())
        payload: dict[str, Any] = {
            "sub": subject,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + int(lifetime_s),
            **claims,
        }
        if name is not None:
            payload["name"] = name
        return jwt.encode(payload, signer.private, algorithm=signer.algorithm,
                          headers={"kid": signer.kid})  # fmt: skip
