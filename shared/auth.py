"""Who the actor is: EdDSA-signed tokens from the department's identity provider.

Services only verify (public key); `make run`, the operator CLI and the tests mint
development tokens with a local key pair.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

AUDIENCE = "wfh"
ADMIN_SCOPE = "directory:admin"


class AuthenticationError(Exception):
    """The token is missing, forged, expired or not for this system."""


@dataclass(frozen=True)
class Identity:
    person_id: str
    tenant: str
    scopes: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        return ADMIN_SCOPE in self.scopes


class TokenVerifier:
    """Verifies tokens. A frontend sends the same token with each of its user's commands until
    it expires: a token verified is remembered (the last `remembered` ones) with its expiry, so
    each is checked against its signature once, and every later use only against the clock."""

    def __init__(self, public_key_pem: bytes, issuer: str, remembered: int = 4096) -> None:
        self._key = serialization.load_pem_public_key(public_key_pem) if public_key_pem else None
        self._issuer = issuer
        self._remembered = remembered
        self._verified: OrderedDict[str, tuple[Identity, float]] = OrderedDict()

    def verify(self, token: str | None) -> Identity:
        if self._key is None:
            raise AuthenticationError("service has no public key configured: every token refused")
        if not token:
            raise AuthenticationError("no token")
        if (known := self._verified.get(token)) is not None:
            identity, expires = known
            if time.time() < expires:
                self._verified.move_to_end(token)
                return identity
            del self._verified[token]
            raise AuthenticationError("token expired")
        identity, expires = self._decode(token)
        self._verified[token] = (identity, expires)
        if len(self._verified) > self._remembered:
            self._verified.popitem(last=False)
        return identity

    def _decode(self, token: str) -> tuple[Identity, float]:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["EdDSA"],
                audience=AUDIENCE,
                issuer=self._issuer,
                options={"require": ["exp", "sub", "tenant", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("token expired") from None
        except jwt.PyJWTError as exc:
            raise AuthenticationError(f"token refused: {exc}") from None
        return Identity(
            person_id=str(claims["sub"]),
            tenant=str(claims["tenant"]),
            scopes=frozenset(str(claims.get("scope", "")).split()),
        ), float(claims["exp"])


@dataclass(frozen=True)
class DevIdentityProvider:
    """A development identity provider: a local Ed25519 key pair that mints tokens."""

    private_key: Ed25519PrivateKey
    issuer: str = "wfh-dev-idp"

    @classmethod
    def generate(cls, issuer: str = "wfh-dev-idp") -> DevIdentityProvider:
        return cls(Ed25519PrivateKey.generate(), issuer)

    @classmethod
    def load_or_create(cls, path: Path, issuer: str = "wfh-dev-idp") -> DevIdentityProvider:
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            assert isinstance(key, Ed25519PrivateKey)
            return cls(key, issuer)
        provider = cls.generate(issuer)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(
            provider.private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.with_suffix(".pub.pem").write_bytes(provider.public_key_pem)
        return provider

    @property
    def public_key_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def mint(
        self, person_id: str, tenant: str, scopes: tuple[str, ...] = (), ttl_seconds: int = 3600
    ) -> str:
        now = int(time.time())
        claims = {
            "sub": person_id,
            "tenant": tenant,
            "iss": self.issuer,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + ttl_seconds,
        }
        if scopes:
            claims["scope"] = " ".join(scopes)
        return jwt.encode(claims, self.private_key, algorithm="EdDSA")
