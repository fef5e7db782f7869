"""Tamper evidence: every stored event is linked to the one before it by a SHA-256 hash chain,
and the chain's head is signed now and then (a checkpoint).

Changing, deleting, inserting or reordering a stored event breaks the chain from that point.
Someone able to rewrite the whole chain still cannot forge the signed checkpoints without the
service's checkpoint key. Verification is a pure function over rows, so it is property-tested.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS = "0" * 64


def _text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, (int, str)):
        return value
    return str(value)


def link(previous_hash: str, row: dict[str, Any]) -> str:
    """The hash of one stored event, chained to its predecessor's."""
    content = {
        "global_position": row["global_position"],
        "stream_id": row["stream_id"],
        "stream_version": row["stream_version"],
        "event_id": _text(row["event_id"]),
        "event_type": row["event_type"],
        "schema_version": row["schema_version"],
        "tenant": row["tenant"],
        "occurred_at": _text(row["occurred_at"]),
        "actor": row["actor"],
        "correlation_id": _text(row["correlation_id"]),
        "causation_id": _text(row["causation_id"]),
        "payload": row["payload"],
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(previous_hash.encode() + canonical.encode()).hexdigest()


def checkpoint_message(position: int, chain_hash: str) -> bytes:
    return f"wfh-chain-checkpoint:{position}:{chain_hash}".encode()


def sign_checkpoint(key: Ed25519PrivateKey, position: int, chain_hash: str) -> str:
    return base64.b64encode(key.sign(checkpoint_message(position, chain_hash))).decode()


@dataclass
class Verdict:
    events: int = 0
    unchained: int = 0  # stored before the chain was introduced
    checkpoints: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


def verify_chain(
    rows: Iterable[dict[str, Any]],
    checkpoints: Iterable[dict[str, Any]] = (),
    public_key: Ed25519PublicKey | None = None,
) -> Verdict:
    """Recompute the chain over rows ordered by position and check every stored hash and
    every signed checkpoint against it."""
    verdict = Verdict()
    recomputed: dict[int, str] = {}
    previous, expected_position = GENESIS, 1
    for row in rows:
        position = row["global_position"]
        if position != expected_position:
            verdict.problems.append(
                f"position {expected_position} expected, found {position}: events deleted or inserted"
            )
        expected_position = position + 1
        if row["chain_hash"] is None and previous == GENESIS:
            verdict.unchained += 1
            continue
        current = link(previous, row)
        if row["chain_hash"] != current:
            verdict.problems.append(
                f"event at position {position} ({row['event_type']} {row['event_id']}) does not "
                "match the chain: changed, inserted or moved"
            )
            return verdict  # everything after is unverifiable against this chain
        recomputed[position] = current
        previous = current
        verdict.events += 1
    for cp in checkpoints:
        verdict.checkpoints += 1
        position, chain_hash = cp["position"], cp["chain_hash"]
        if public_key is not None:
            try:
                public_key.verify(base64.b64decode(cp["signature"]), checkpoint_message(position, chain_hash))
            except (InvalidSignature, ValueError):
                verdict.problems.append(f"checkpoint at position {position}: signature invalid")
                continue
        if recomputed.get(position) != chain_hash:
            verdict.problems.append(
                f"checkpoint at position {position} signed a different chain: history rewritten"
                if position in recomputed
                else f"checkpoint at position {position} is beyond the stored events: events deleted"
            )
    return verdict


def key_id(public_key: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return hashlib.sha256(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


def public_key_text(public_key: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return base64.b64encode(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def load_public_key(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text))
