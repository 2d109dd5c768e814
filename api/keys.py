"""API keys: a keys file or NBA_API_KEYS (names, roles, SHA-256 of tokens) → who is calling, by role.

Tokens are random and long, so a SHA-256 lookup is as safe as a slow password hash would be and costs
a microsecond per request instead of tens of milliseconds. Tokens themselves are never stored.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from nba.errors import DataError

Role = Literal["agent", "admin"]
# What each role may do; admin can do everything an agent can.
ROLE_GRANTS: Final[dict[Role, frozenset[Role]]] = {
    "agent": frozenset({"agent"}),
    "admin": frozenset({"agent", "admin"}),
}


class ApiKey(BaseModel):
    """One configured key: who holds it, what it may do, and the SHA-256 of its token (hex)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: Role
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    def may(self, role: Role) -> bool:
        return role in ROLE_GRANTS[self.role]


_KEYS = TypeAdapter(list[ApiKey])


def hash_token(token: str) -> str:
    """The hex SHA-256 of a token, as stored in a keys file."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return "nba_" + secrets.token_urlsafe(32)


def parse_keys(text: str, source: str) -> list[ApiKey]:
    """Keys from JSON text; DataError names the source, the entry and the field."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    try:
        keys = _KEYS.validate_python(raw)
    except PydanticValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise DataError(f"{source}: entry {where}: {error['msg']}") from None
    seen: set[str] = set()
    for key in keys:
        if key.name in seen:
            raise DataError(f"{source}: the key name {key.name!r} appears twice")
        seen.add(key.name)
    return keys


class KeyRing:
    """The configured keys, looked up by the hash of the presented token."""

    def __init__(self, keys: Sequence[ApiKey]) -> None:
        self._by_hash = {key.sha256: key for key in keys}

    def __len__(self) -> int:
        return len(self._by_hash)

    def identify(self, token: str | None) -> ApiKey | None:
        if not token or len(token) > 256:
            return None
        return self._by_hash.get(hash_token(token))

    @classmethod
    def load(cls, keys_file: Path | None, inline: str | None) -> KeyRing:
        """Keys from the file and from the inline JSON (NBA_API_KEYS) together."""
        keys: list[ApiKey] = []
        if keys_file is not None:
            try:
                text = keys_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise DataError(f"{keys_file}: cannot read the API keys file ({exc.strerror})") from None
            keys += parse_keys(text, str(keys_file))
        if inline:
            keys += parse_keys(inline, "NBA_API_KEYS")
        return cls(keys)


def add_key(keys_file: Path, name: str, role: Role) -> str:
    """Creates a token, appends its hash to the keys file (created if missing) and returns the token."""
    keys = parse_keys(keys_file.read_text(encoding="utf-8"), str(keys_file)) if keys_file.exists() else []
    if any(key.name == name for key in keys):
        raise DataError(f"{keys_file}: a key named {name!r} already exists")
    token = new_token()
    try:
        keys.append(ApiKey(name=name, role=role, sha256=hash_token(token)))
    except PydanticValidationError as exc:
        raise DataError(f"`name` {name!r}: {exc.errors()[0]['msg']}") from None
    keys_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = keys_file.with_name(keys_file.name + ".tmp")
    tmp.write_text(json.dumps([key.model_dump() for key in keys], indent=2) + "\n", encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(keys_file)
    return token
