"""How a leader's signature on a document is checked, by the algorithm the leader's signer used.

Leaders sign on their own side (shared.signatures.Signer): the service holds no private key
and cannot sign for anyone. "ed25519" is checked against the key the leader registered in
the directory (development keys today); "x509" against the certificate sent with the
signature, which must come from a CA trusted here (WFH_DOCUMENTS_TRUSTED_CA_FILE, a PEM
bundle) and name the leader's e-mail address. Another scheme is one more entry in `checks`.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path

from shared import signatures
from shared.directory import Directory, Person


@dataclass(frozen=True)
class Signed:
    """A signature as presented: who claims it, over what, with which key or certificate, when."""

    algorithm: str
    key_id: str
    signature: str
    content: dict
    certificate_pem: str | None
    at: datetime


SignatureCheck = Callable[[Directory, Person, Signed], Awaitable[bool]]


async def registered_key(directory: Directory, signer: Person, signed: Signed) -> bool:
    key = await directory.public_key(signed.key_id)
    return (
        key is not None
        and key[0] == signer.person_id
        and signatures.verify(key[1], signed.content, signed.signature)
    )


@dataclass(frozen=True)
class CertifiedKey:
    trusted_ca_pems: tuple[str, ...]

    async def __call__(self, directory: Directory, signer: Person, signed: Signed) -> bool:
        if not signed.certificate_pem:
            return False
        if signatures.certificate_fingerprint(signed.certificate_pem) != signed.key_id:
            return False
        cert = signatures.verify_with_certificate(
            signed.certificate_pem, self.trusted_ca_pems, signed.content, signed.signature, signed.at
        )
        return cert is not None and signer.email.lower() in signatures.certificate_emails(cert)


def checks(trusted_ca_pems: tuple[str, ...] = ()) -> dict[str, SignatureCheck]:
    return {"ed25519": registered_key, "x509": CertifiedKey(trusted_ca_pems)}


def split_pem_bundle(text: str) -> tuple[str, ...]:
    end = "-----END CERTIFICATE-----"
    return tuple(part.strip() + "\n" + end + "\n" for part in text.split(end) if part.strip())


@cache
def configured_checks() -> dict[str, SignatureCheck]:
    bundle = os.environ.get("WFH_DOCUMENTS_TRUSTED_CA_FILE")
    pems = split_pem_bundle(Path(bundle).read_text()) if bundle and Path(bundle).exists() else ()
    return checks(pems)


async def signature_holds(directory: Directory, signer: Person, signed: Signed) -> bool:
    check = configured_checks().get(signed.algorithm)
    return check is not None and await check(directory, signer, signed)
