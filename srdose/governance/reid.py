"""Re-identification: pseudonym -> original patient ID, for authorised staff only.

When ``[governance] reidentification_key_file`` is set, ingest keeps, per
site pseudonym, the patient ID encrypted with AES-256-GCM (random 96-bit
nonce; the pseudonym is the associated data, so an entry cannot be moved to
another pseudonym). The key is a file outside the database (hex, mode 0600,
created on first use like the site secret): a copy of the database alone
re-identifies nobody. Only ``srdose reidentify PSEUDONYM --key-file FILE``
decrypts, and every attempt is written to the audit trail.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from srdose.pseudonym import load_or_create_secret


class ReidentificationError(Exception):
    pass


def _key_from_text(data: bytes) -> bytes:
    text = data.strip()
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        key = b""
    return key if len(key) == 32 else hashlib.sha256(text).digest()


def load_or_create_key(path) -> bytes:
    """The AES-256 key of ``path``, created (mode 0600) if missing; refused if others can read it."""
    return _key_from_text(load_or_create_secret(Path(path).expanduser()))


def load_key(path) -> bytes:
    """The key of an existing file (``srdose reidentify`` never creates one)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ReidentificationError(f"key file {p} does not exist")
    return load_or_create_key(p)


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"srdose-reid\x00" + key).hexdigest()[:16]


def encrypt(key: bytes, pseudonym: str, patient_id: str) -> tuple[str, str, str]:
    """(nonce hex, ciphertext hex, key id) of ``patient_id`` under ``key``."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    ct = AESGCM(key).encrypt(nonce, patient_id.encode("utf-8"), pseudonym.encode("ascii"))
    return nonce.hex(), ct.hex(), key_id(key)


def decrypt(key: bytes, pseudonym: str, nonce: str, ciphertext: str, entry_key_id: str) -> str:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if entry_key_id != key_id(key):
        raise ReidentificationError("this key is not the one the mapping was written with")
    try:
        return (
            AESGCM(key)
            .decrypt(bytes.fromhex(nonce), bytes.fromhex(ciphertext), pseudonym.encode("ascii"))
            .decode("utf-8")
        )
    except InvalidTag:
        raise ReidentificationError("decryption failed: wrong key or tampered entry") from None
