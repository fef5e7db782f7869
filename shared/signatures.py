"""Electronic signatures over canonical JSON: Ed25519 today, any signer with the same shape later."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID


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


# --- pluggable signers -------------------------------------------------------------------
# Signing happens on the signer's side (their key never reaches a service); services verify.
# Today's development signer is an Ed25519 key registered in the directory; a key certified by
# a CA (the Government CA's USB token, a remote-signing service) plugs in as CertificateSigner,
# and is verified against the trusted CA certificates instead of a registered key.


class Signer(Protocol):
    """Signs canonical content; says which algorithm and key (or certificate) check it."""

    algorithm: str
    key_id: str
    certificate_pem: str | None

    def sign(self, content: dict[str, Any]) -> str: ...


@dataclass(frozen=True)
class Ed25519Signer:
    """A raw Ed25519 key whose public half is registered in the directory under `key_id`."""

    private_key: Ed25519PrivateKey
    key_id: str
    algorithm: str = "ed25519"
    certificate_pem: str | None = None

    def sign(self, content: dict[str, Any]) -> str:
        return sign(self.private_key, content)


def _sign_bytes(private_key, data: bytes) -> bytes:
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return private_key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return private_key.sign(data)  # Ed25519


def _verify_bytes(public_key, signature: bytes, data: bytes) -> None:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(public_key, Ed25519PublicKey):
        public_key.verify(signature, data)
    else:
        raise TypeError(f"unsupported key type {type(public_key).__name__}")


@dataclass(frozen=True)
class CertificateSigner:
    """A key certified by a CA: the certificate travels with the signature."""

    private_key: Any  # EC (ECDSA P-256/SHA-256), RSA (PKCS#1 v1.5/SHA-256) or Ed25519
    certificate_pem: str
    algorithm: str = "x509"

    @property
    def key_id(self) -> str:
        return certificate_fingerprint(self.certificate_pem)

    def sign(self, content: dict[str, Any]) -> str:
        return base64.b64encode(_sign_bytes(self.private_key, canonical_bytes(content))).decode()


def certificate_fingerprint(certificate_pem: str) -> str:
    cert = x509.load_pem_x509_certificate(certificate_pem.encode())
    return cert.fingerprint(hashes.SHA256()).hex()


def certificate_emails(cert: x509.Certificate) -> set[str]:
    """The e-mail addresses a certificate names (subject and subjectAltName), lower-cased."""
    emails = {a.value.lower() for a in cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)}
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        emails |= {e.lower() for e in san.get_values_for_type(x509.RFC822Name)}
    except x509.ExtensionNotFound:
        pass
    return emails


def verify_with_certificate(
    certificate_pem: str, trusted_ca_pems: Sequence[str], content: dict[str, Any],
    signature_b64: str, at: datetime,
) -> x509.Certificate | None:
    """The certificate when it was issued by a trusted CA, valid at `at`, and its key made the
    signature over `content`; otherwise None."""
    try:
        cert = x509.load_pem_x509_certificate(certificate_pem.encode())
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            return None
        issuers = [x509.load_pem_x509_certificate(pem.encode()) for pem in trusted_ca_pems]
        if not any(_issued_by(cert, ca) for ca in issuers):
            return None
        _verify_bytes(cert.public_key(), base64.b64decode(signature_b64), canonical_bytes(content))
    except (InvalidSignature, ValueError, TypeError):
        return None
    return cert


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
