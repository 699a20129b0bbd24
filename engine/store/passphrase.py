"""The admin passphrase: only an scrypt hash is kept, never the text.

scrypt (n=2**14, r=8, p=1, 16 MiB) makes each guess cost tens of milliseconds, which is what
matters here: the person most motivated to guess is the locked-out trader sitting at the machine.
The parameters are stored with the hash so they can be raised later without breaking old hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import os

_N, _R, _P, _DKLEN = 2**14, 8, 1, 32


def _derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(passphrase.encode(), salt=salt, n=n, r=r, p=p, dklen=_DKLEN, maxmem=64 * 1024 * 1024)


def hash_passphrase(passphrase: str) -> str:
    """``scrypt$n$r$p$salt_hex$hash_hex`` with a fresh random salt."""
    if not passphrase:
        raise ValueError("the admin passphrase cannot be empty")
    salt = os.urandom(16)
    digest = _derive(passphrase, salt, _N, _R, _P)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def check_passphrase(passphrase: str, stored: str) -> bool:
    """Constant-time comparison, so timing does not leak how much of a guess was right."""
    scheme, n, r, p, salt, digest = stored.split("$")
    if scheme != "scrypt":
        raise ValueError(f"unknown passphrase hash scheme {scheme!r}")
    candidate = _derive(passphrase, bytes.fromhex(salt), int(n), int(r), int(p))
    return hmac.compare_digest(candidate, bytes.fromhex(digest))
