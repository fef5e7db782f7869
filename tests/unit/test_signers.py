"""Pluggable signers: the development Ed25519 key, or a key certified by a trusted CA (X.509)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from services.documents.signing import CertifiedKey, Signed, registered_key, split_pem_bundle
from shared import signatures
from shared.directory import Person

NOW = datetime.now(UTC)
CONTENT = {"document": "outgoing-document", "file_sha256": "ab" * 32, "summary": "Kế hoạch"}
LEADER = Person("gd", "Giám đốc", "giamdoc@so.vn", "bgd", frozenset({"director"}), "vi", True)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def make_ca(name: str = "CA Chuyên dùng Chính phủ (thử nghiệm)"):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue_certificate(ca, email: str, key=None, days: int = 365):
    ca_key, ca_cert = ca
    key = key or ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, email)]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return signatures.CertificateSigner(key, _pem(cert))


def test_a_certificate_signature_verifies_only_for_its_content_its_ca_and_its_validity():
    ca = make_ca()
    signer = issue_certificate(ca, "giamdoc@so.vn")
    signature = signer.sign(CONTENT)
    trusted = [_pem(ca[1])]
    cert = signatures.verify_with_certificate(signer.certificate_pem, trusted, CONTENT, signature, NOW)
    assert cert is not None and signatures.certificate_emails(cert) == {"giamdoc@so.vn"}
    tampered = {**CONTENT, "file_sha256": "cd" * 32}
    assert signatures.verify_with_certificate(signer.certificate_pem, trusted, tampered, signature, NOW) is None
    assert signatures.verify_with_certificate(
        signer.certificate_pem, [_pem(make_ca("Khác")[1])], CONTENT, signature, NOW) is None
    assert signatures.verify_with_certificate(
        signer.certificate_pem, trusted, CONTENT, signature, NOW + timedelta(days=400)) is None
    assert signatures.verify_with_certificate("not a certificate", trusted, CONTENT, signature, NOW) is None


def test_rsa_certificates_work_too():
    ca = make_ca()
    signer = issue_certificate(ca, "giamdoc@so.vn", key=rsa.generate_private_key(65537, 2048))
    assert signatures.verify_with_certificate(
        signer.certificate_pem, [_pem(ca[1])], CONTENT, signer.sign(CONTENT), NOW) is not None


def _signed(signer, content=CONTENT) -> Signed:
    return Signed(signer.algorithm, signer.key_id, signer.sign(content), content, signer.certificate_pem, NOW)


def test_the_certified_key_check_wants_a_trusted_certificate_naming_the_signer():
    ca = make_ca()
    check = CertifiedKey((_pem(ca[1]),))
    good = issue_certificate(ca, "GiamDoc@so.vn")
    assert asyncio.run(check(None, LEADER, _signed(good)))
    someone_else = issue_certificate(ca, "ketoan@so.vn")
    assert not asyncio.run(check(None, LEADER, _signed(someone_else)))
    wrong_id = _signed(good)
    assert not asyncio.run(check(None, LEADER, Signed(**{**wrong_id.__dict__, "key_id": "x"})))
    assert not asyncio.run(CertifiedKey(())(None, LEADER, _signed(good)))  # no CA trusted


class FakeDirectory:
    def __init__(self, keys: dict[str, tuple[str, str]]) -> None:
        self.keys = keys

    async def public_key(self, key_id: str):
        return self.keys.get(key_id)


def test_the_registered_key_check_wants_the_signers_own_registered_key():
    key = signatures.development_signing_key("t", "gd")
    signer = signatures.Ed25519Signer(key, "gd-k1")
    directory = FakeDirectory({"gd-k1": ("gd", signatures.public_key_b64(key)),
                               "other-k1": ("pgd", signatures.public_key_b64(key))})
    assert asyncio.run(registered_key(directory, LEADER, _signed(signer)))
    assert not asyncio.run(registered_key(directory, LEADER, _signed(signatures.Ed25519Signer(key, "other-k1"))))
    assert not asyncio.run(registered_key(directory, LEADER, _signed(signatures.Ed25519Signer(key, "nope"))))
    forged = Signed("ed25519", "gd-k1", signer.sign({"other": 1}), CONTENT, None, NOW)
    assert not asyncio.run(registered_key(directory, LEADER, forged))


def test_a_pem_bundle_splits_into_certificates():
    pems = [_pem(make_ca(f"CA {i}")[1]) for i in range(2)]
    assert [x509.load_pem_x509_certificate(p.encode()).subject for p in split_pem_bundle("".join(pems))] == [
        x509.load_pem_x509_certificate(p.encode()).subject for p in pems]
