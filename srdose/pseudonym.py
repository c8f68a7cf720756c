"""Keyed pseudonyms for patient identifiers.

A pseudonym is HMAC-SHA256 of the identifier under the site secret, so the
same patient gets the same pseudonym at one site, a different one elsewhere,
and nobody without the secret can test a guessed ID against it (a bare hash
of an NHS number can be reversed by trying all ten-digit numbers).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

SECRET_BYTES = 32


def load_or_create_secret(path: Path) -> bytes:
    """Read the site secret, creating it (mode 0600) on first use.

    Raises
    ------
    PermissionError
        When the file exists but can be read by others: a secret anyone can
        read is not a secret. ``chmod 600 PATH`` fixes it.
    """
    path = Path(path)
    if path.exists():
        mode = path.stat().st_mode & 0o077
        if mode:
            raise PermissionError(
                f"site secret {path} is readable by other users (mode {oct(path.stat().st_mode & 0o777)}); "
                f"run: chmod 600 {path}"
            )
        data = path.read_bytes().strip()
        if len(data) < 32:
            raise ValueError(f"site secret {path} is too short ({len(data)} bytes); it must hold at least 32")
        return data
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(SECRET_BYTES).encode()
    # O_EXCL: two processes starting together must not overwrite each other's key
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secret + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return secret


class Pseudonymiser:
    """Turns identifiers into keyed pseudonyms.

    Parameters
    ----------
    secret
        The site secret (bytes).
    """

    def __init__(self, secret: bytes):
        self._secret = bytes(secret)

    def pseudonym(self, kind: str, value: str | None) -> str | None:
        """Pseudonym of ``value``; ``kind`` ("patient", "accession") separates
        the namespaces so a patient ID and an accession number never collide.
        """
        if value is None:
            return None
        value = str(value).strip()
        if not value:
            return None
        mac = hmac.new(self._secret, f"{kind}\x00{value}".encode(), hashlib.sha256)
        return mac.hexdigest()[:32]

    def patient(self, patient_id: str | None) -> str | None:
        return self.pseudonym("patient", patient_id)

    def accession(self, accession: str | None) -> str | None:
        return self.pseudonym("accession", accession)
