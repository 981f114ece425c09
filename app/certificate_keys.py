"""The keys that sign and verify certificates of service (Ed25519), read once per app.

Configuration, like the keys app.secrets checks: ``CERTIFICATE_SIGNING_KEY`` signs new
certificates, ``CERTIFICATE_VERIFY_KEYS`` keeps the ones signed before a rotation
verifying (app.services.certificates says what a certificate's code holds). Here, below
the services, so that the start-up checks (app.secrets) and the CLI read them without
reaching up into a service.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from flask import Flask

from app.config import is_development

KEY_ID_BYTES = 4


class CertificateKeyError(RuntimeError):
    """The certificate keys are missing or unreadable; the message says what to set."""


@dataclass(frozen=True)
class CertificateKeys:
    """The key that signs new certificates, and every public key that verifies (by key id)."""

    signing: Ed25519PrivateKey
    signing_id: bytes
    verifying: dict[bytes, Ed25519PublicKey] = field(default_factory=dict)


def key_id(public_key: Ed25519PublicKey) -> bytes:
    """The first 4 bytes of the SHA-256 of the raw public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:KEY_ID_BYTES]


def certificate_key(app: Flask) -> CertificateKeys:
    """The app's certificate keys, read from its configuration once.

    ``CERTIFICATE_SIGNING_KEY`` is required in production (``app.secrets``
    refuses to start without it); in development and tests a key is derived from
    ``SECRET_KEY`` (certificates of a development instance verify only there).
    Raises :class:`CertificateKeyError` naming the variable otherwise.
    """
    keys = app.extensions.get("certificate_keys")
    if keys is not None:
        return keys
    configured = app.config.get("CERTIFICATE_SIGNING_KEY")
    if configured:
        signing = load_private_key(configured, "CERTIFICATE_SIGNING_KEY")
    elif is_development(app):
        seed = hashlib.sha256(b"yongzhiyuan development certificate key\0" + str(app.config["SECRET_KEY"]).encode())
        signing = Ed25519PrivateKey.from_private_bytes(seed.digest())
    else:
        raise CertificateKeyError(
            "CERTIFICATE_SIGNING_KEY is not set: certificates cannot be signed or verified. "
            "Generate one with `flask certificates keygen` and set it in the environment."
        )
    verifying = {key_id(signing.public_key()): signing.public_key()}
    for text in (app.config.get("CERTIFICATE_VERIFY_KEYS") or "").split(","):
        if text.strip():
            public = load_public_key(text, "CERTIFICATE_VERIFY_KEYS")
            verifying.setdefault(key_id(public), public)
    keys = CertificateKeys(signing=signing, signing_id=key_id(signing.public_key()), verifying=verifying)
    app.extensions["certificate_keys"] = keys
    return keys


def load_private_key(text: str, name: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM (PKCS#8) or the base64 of its 32-byte seed."""
    return _load_key(text, name, Ed25519PrivateKey, lambda pem: serialization.load_pem_private_key(pem, password=None))


def load_public_key(text: str, name: str) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM or the base64 of its 32 raw bytes."""
    return _load_key(text, name, Ed25519PublicKey, serialization.load_pem_public_key)


def _load_key(text: str, name: str, key_type: type, load_pem: Callable[[bytes], object]):
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = load_pem(text.encode())
        elif key_type is Ed25519PrivateKey:
            key = Ed25519PrivateKey.from_private_bytes(_b64_32(text))
        else:
            key = Ed25519PublicKey.from_public_bytes(_b64_32(text))
    except (ValueError, TypeError) as exc:
        raise CertificateKeyError(
            f"{name} holds something that is not an Ed25519 key (PEM or base64 of 32 bytes)."
        ) from exc
    if not isinstance(key, key_type):
        raise CertificateKeyError(f"{name} must hold Ed25519 keys.")
    return key


def _b64_32(text: str) -> bytes:
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError("not base64") from exc
    if len(raw) != 32:
        raise ValueError("not 32 bytes")
    return raw


def public_key_text(public_key: Ed25519PublicKey) -> str:
    """The base64 of a public key's 32 raw bytes (the form CERTIFICATE_VERIFY_KEYS takes)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def new_signing_key() -> tuple[str, str]:
    """A fresh key: (the base64 seed for CERTIFICATE_SIGNING_KEY, its public key)."""
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return base64.b64encode(seed).decode(), public_key_text(key.public_key())
