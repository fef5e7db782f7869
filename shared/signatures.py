"""Electronic signatures over canonical JSON: Ed25519 today, any signer with the same shape later."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def canonical_bytes(content: dict[str, Any]) -> bytes:
    """The exact bytes a signature covers: sorted keys, no spaces, UTF-8."""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sign(private_key: Ed25519PrivateKey, content: dict[str, Any]) -> str:
    return base64.b64encode(private_key.sign(canonical_bytes(content))).decode()


def verify(public_key_b64: str, content: dict[str, Any], signature_b64: str) -> bool:
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))
        key.verify(base64.b64decode(signature_b64), canonical_bytes(content))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def public_key_b64(private_key: Ed25519PrivateKey) -> str:
    raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def development_signing_key(tenant: str, person_id: str) -> Ed25519PrivateKey:
    """A person's signing key derived from their id: for the demo department and tests only."""
    seed = hashlib.sha256(f"wfh-development-signing-key:{tenant}:{person_id}".encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)
