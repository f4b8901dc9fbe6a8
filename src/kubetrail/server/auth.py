"""Bearer tokens with roles, stored hashed.

The tokens file (``server.tokens_file``) never holds a token, only a salted hash:

    tokens:
      - name: node-agents                 # shows up in logs and metrics instead of the secret
        hash: "sha256$<salt hex>$<digest hex>"
        roles: [agent]                    # agent (ingest), admin, hunter, viewer
        namespaces: []                    # viewer: the only namespaces it may search (empty: none)

``kubetrail server token create --name NAME --role agent`` prints a fresh random token and its entry.
Tokens are 256-bit random strings, so one salted SHA-256 is as strong as a slow KDF here (the same
choice GitHub and Kubernetes make for API tokens) and cheap enough to check on every request; a
verified token is cached by its unsalted digest so the salted comparisons run once per token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubetrail.errors import ConfigError

__all__ = ["ROLES", "Identity", "TokenEntry", "TokenStore", "generate_token", "hash_token", "verify_hash"]

Role = Literal["agent", "admin", "hunter", "viewer"]
ROLES: tuple[str, ...] = ("agent", "admin", "hunter", "viewer")


class TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    hash: str = Field(pattern=r"^sha256\$[0-9a-f]{32}\$[0-9a-f]{64}$")
    roles: list[Role] = Field(min_length=1)
    namespaces: list[str] = Field(default_factory=list)


class _TokensFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tokens: list[TokenEntry] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    roles: frozenset[str]
    namespaces: tuple[str, ...] = ()

    def has(self, role: str) -> bool:
        return role in self.roles or "admin" in self.roles

    def read_scope(self) -> tuple[str, ...] | None:
        """The namespaces this identity may search, None: all. Hunters and admins read everything;
        a viewer only its token's namespaces (none when empty); any other identity reads nothing."""
        if self.has("hunter"):
            return None
        return self.namespaces if "viewer" in self.roles else ()


def generate_token() -> str:
    return "kt_" + secrets.token_urlsafe(32)


def hash_token(token: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.sha256(salt + token.encode()).hexdigest()
    return f"sha256${salt.hex()}${digest}"


def verify_hash(token: str, stored: str) -> bool:
    try:
        scheme, salt_hex, digest = stored.split("$")
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    if scheme != "sha256":
        return False
    return hmac.compare_digest(hashlib.sha256(salt + token.encode()).hexdigest(), digest)


class TokenStore:
    """The configured tokens; ``authenticate`` maps a presented token to an Identity (or None)."""

    def __init__(self, entries: list[TokenEntry]) -> None:
        self.entries = entries
        self._cache: dict[bytes, Identity | None] = {}

    @classmethod
    def load(cls, path: Path) -> TokenStore:
        try:
            raw = yaml.safe_load(path.read_text()) or {}
            return cls(_TokensFile.model_validate(raw).tokens)
        except FileNotFoundError:
            raise ConfigError([("server.tokens_file", f"{path} not found")]) from None
        except (yaml.YAMLError, ValidationError) as exc:
            raise ConfigError([("server.tokens_file", f"{path}: {exc}")]) from None

    def authenticate(self, token: str) -> Identity | None:
        key = hashlib.sha256(token.encode()).digest()
        if key in self._cache:
            return self._cache[key]
        found: Identity | None = None
        for entry in self.entries:
            if verify_hash(token, entry.hash):
                found = Identity(entry.name, frozenset(entry.roles), tuple(entry.namespaces))
                break
        if found is not None or len(self._cache) < 10_000:  # bounded: guessing cannot grow memory
            self._cache[key] = found
        return found
