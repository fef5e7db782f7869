"""Who the actor is: tokens minted by the identity provider are accepted, anything else refused."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.auth import (
    ADMIN_SCOPE,
    AUDIENCE,
    AuthenticationError,
    DevIdentityProvider,
    Identity,
    TokenVerifier,
)

TENANT = "so-tttt-thanhhoa"


@pytest.fixture(scope="module")
def idp() -> DevIdentityProvider:
    return DevIdentityProvider.generate()


@pytest.fixture(scope="module")
def verifier(idp) -> TokenVerifier:
    return TokenVerifier(idp.public_key_pem, idp.issuer)


def claims(idp: DevIdentityProvider, **overrides) -> dict:
    now = int(time.time())
    base = {
        "sub": "nv-an", "tenant": TENANT, "iss": idp.issuer, "aud": AUDIENCE,
        "iat": now, "exp": now + 600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(idp: DevIdentityProvider, payload: dict) -> str:
    return jwt.encode(payload, idp.private_key, algorithm="EdDSA")


def test_minted_token_verifies_to_the_identity(idp, verifier):
    identity = verifier.verify(idp.mint("nv-an", TENANT))
    assert identity == Identity(person_id="nv-an", tenant=TENANT, scopes=frozenset())
    assert not identity.is_admin


def test_scopes_travel_in_the_token(idp, verifier):
    identity = verifier.verify(idp.mint("it-admin", TENANT, scopes=(ADMIN_SCOPE, "reports:read")))
    assert identity.scopes == {ADMIN_SCOPE, "reports:read"}
    assert identity.is_admin


def test_a_hand_signed_token_with_the_right_key_is_accepted(idp, verifier):
    # The control for the refusals below: same helper, only one claim changed each time.
    assert verifier.verify(sign(idp, claims(idp))).person_id == "nv-an"


def test_forged_token_signed_by_another_key_is_refused(idp, verifier):
    forger = DevIdentityProvider(Ed25519PrivateKey.generate(), idp.issuer)
    with pytest.raises(AuthenticationError, match="refused"):
        verifier.verify(forger.mint("nv-an", TENANT, scopes=(ADMIN_SCOPE,)))


def test_tampered_token_is_refused(idp, verifier):
    genuine = idp.mint("nv-an", TENANT)
    header, _, signature = genuine.split(".")
    other_payload = idp.mint("it-admin", TENANT, scopes=(ADMIN_SCOPE,)).split(".")[1]
    with pytest.raises(AuthenticationError):
        verifier.verify(f"{header}.{other_payload}.{signature}")


def test_unsigned_and_symmetric_tokens_are_refused(idp, verifier):
    unsigned = jwt.encode(claims(idp), None, algorithm="none")
    with pytest.raises(AuthenticationError):
        verifier.verify(unsigned)
    # A token signed with a shared secret instead of the provider's key pair.
    hmac_token = jwt.encode(claims(idp), "a-shared-secret-of-32-bytes-long!", algorithm="HS256")
    with pytest.raises(AuthenticationError):
        verifier.verify(hmac_token)


def test_expired_token_is_refused(idp, verifier):
    with pytest.raises(AuthenticationError, match="expired"):
        verifier.verify(idp.mint("nv-an", TENANT, ttl_seconds=-5))
    past = int(time.time()) - 3600
    with pytest.raises(AuthenticationError, match="expired"):
        verifier.verify(sign(idp, claims(idp, iat=past - 60, exp=past)))


def test_token_for_another_audience_is_refused(idp, verifier):
    with pytest.raises(AuthenticationError, match="refused"):
        verifier.verify(sign(idp, claims(idp, aud="payroll")))


def test_token_from_another_issuer_is_refused(idp, verifier):
    other_issuer = DevIdentityProvider(idp.private_key, "someone-else")  # even with the same key
    with pytest.raises(AuthenticationError, match="refused"):
        verifier.verify(other_issuer.mint("nv-an", TENANT))


@pytest.mark.parametrize("claim", ["exp", "sub", "tenant", "iss", "aud"])
def test_token_missing_a_required_claim_is_refused(idp, verifier, claim):
    with pytest.raises(AuthenticationError):
        verifier.verify(sign(idp, claims(idp, **{claim: None})))


@pytest.mark.parametrize("token", [None, ""])
def test_missing_token_is_refused(verifier, token):
    with pytest.raises(AuthenticationError, match="no token"):
        verifier.verify(token)


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "ey.ey.ey"])
def test_garbage_token_is_refused(verifier, token):
    with pytest.raises(AuthenticationError):
        verifier.verify(token)


def test_a_verifier_without_a_key_refuses_everything(idp):
    with pytest.raises(AuthenticationError, match="no public key"):
        TokenVerifier(b"", idp.issuer).verify(idp.mint("nv-an", TENANT))


def test_load_or_create_keeps_the_same_key(tmp_path):
    path = tmp_path / "keys" / "idp.pem"
    first = DevIdentityProvider.load_or_create(path)
    again = DevIdentityProvider.load_or_create(path)
    assert first.public_key_pem == again.public_key_pem
    assert path.with_suffix(".pub.pem").read_bytes() == first.public_key_pem
    verifier = TokenVerifier(path.with_suffix(".pub.pem").read_bytes(), first.issuer)
    assert verifier.verify(again.mint("nv-an", TENANT)).person_id == "nv-an"


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """The tokens whose signature was checked (jwt.decode called), in order."""
    calls: list[str] = []
    real = jwt.decode

    def counting(token, *args, **kw):
        calls.append(token)
        return real(token, *args, **kw)

    monkeypatch.setattr(jwt, "decode", counting)
    return calls


def test_a_token_is_checked_once_then_only_against_the_clock(idp, decodes, monkeypatch):
    verifier = TokenVerifier(idp.public_key_pem, idp.issuer)
    token = idp.mint("nv-an", TENANT, ttl_seconds=60)
    first = verifier.verify(token)
    assert verifier.verify(token) == first == verifier.verify(token)
    assert decodes == [token]
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(AuthenticationError, match="expired"):
        verifier.verify(token)
    assert decodes == [token]  # refused by the clock alone, at the expiry the token carried


def test_a_refused_token_is_not_remembered(idp, decodes):
    verifier = TokenVerifier(idp.public_key_pem, idp.issuer)
    forged = DevIdentityProvider(Ed25519PrivateKey.generate(), idp.issuer).mint("nv-an", TENANT)
    for _ in range(2):
        with pytest.raises(AuthenticationError, match="refused"):
            verifier.verify(forged)
    assert decodes == [forged, forged]


def test_only_the_last_tokens_used_are_remembered(idp, decodes):
    verifier = TokenVerifier(idp.public_key_pem, idp.issuer, remembered=2)
    a, b, c = (idp.mint(p, TENANT) for p in ("nv-a", "nv-b", "nv-c"))
    for token in (a, b, a, c):  # c pushes out b, the least recently used
        verifier.verify(token)
    assert decodes == [a, b, c]
    assert verifier.verify(a).person_id == "nv-a" and verifier.verify(b).person_id == "nv-b"
    assert decodes == [a, b, c, b]
