"""Who a connection or a request is, and what it may do: JWT verification (PyJWT) and the
room rules of the settings.

A site's backend mints a token for its signed-in user (README, "Authentication"); fastchat
only verifies it: the signature with AUTH_SECRET (HS256) or AUTH_PUBLIC_KEY (RS256 or ES256,
by the key's type; the algorithm is never taken from the token's header, so `alg: none` and
HS/RS confusion are refused), `exp` (required), `nbf`, and `aud` / `iss` when configured.
Claims: `sub` (the user id, required), `name` (shown; `sub` when absent), `rooms` (patterns
the user may join; absent: every public room), `publish` (patterns it may post in; absent:
the rooms it may join), `roles` (`moderator`, `admin`).

Without AUTH_SECRET or AUTH_PUBLIC_KEY there are no tokens and everything is as in the
original: anyone joins any room under any name. Tokens are never logged.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Final

import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from fastchat.config import Settings
from fastchat.errors import ErrorCode, FastchatError
from fastchat.store import Edit

MODERATOR_ROLES: Final = frozenset(("moderator", "admin"))
# Longest token accepted (a JWT with a few patterns is well under 1 kB).
TOKEN_MAX: Final = 8192
# The cookie an embedding site may set for the pages and the handshake.
COOKIE: Final = "fastchat_token"


class Identity(msgspec.Struct, frozen=True):
    """A verified token's user."""

    sub: str
    name: str
    exp: float  # Unix seconds
    rooms: tuple[str, ...] | None = None
    publish: tuple[str, ...] | None = None
    roles: frozenset[str] = frozenset()

    @property
    def moderator(self) -> bool:
        return bool(self.roles & MODERATOR_ROLES)


def patterns(value: str) -> tuple[str, ...]:
    """A comma-separated list of room patterns (fnmatch, case-sensitive)."""
    return tuple(p.strip() for p in value.split(",") if p.strip())


def matches(room: str, globs: Iterable[str]) -> bool:
    return any(fnmatchcase(room, g) for g in globs)


def refused(code: str, message: str) -> FastchatError:
    return FastchatError(code, message)


class Auth:
    """The server's token and room rules, from the settings; one per process."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = bool(settings.auth_secret or settings.auth_public_key)
        self.required = settings.auth_required
        self.audience = settings.auth_audience or None
        self.issuer = settings.auth_issuer or None
        self.private = patterns(settings.private_rooms)
        self.read_only = patterns(settings.read_only_rooms)
        self.edit_window_ms = int(settings.edit_window_seconds * 1000)
        self._key: Any = settings.auth_secret
        self._algorithms = ["HS256"]
        if settings.auth_public_key:
            self._key, algorithm = public_key(settings.auth_public_key)
            self._algorithms = [algorithm]

    # -- tokens ---------------------------------------------------------------------------

    def verify(self, token: str) -> Identity:
        """The token's identity; FastchatError with a `token_*` code (401) if it is not
        one this server accepts."""
        if not self.enabled:
            raise refused(ErrorCode.UNAUTHORIZED, "this server takes no tokens (no AUTH_SECRET)")
        if not token or len(token) > TOKEN_MAX:
            raise refused(ErrorCode.TOKEN_INVALID, "the token is empty or too long")
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError:
            raise refused(ErrorCode.TOKEN_INVALID, "the token is not a JWT") from None
        if algorithm not in self._algorithms:
            raise refused(
                ErrorCode.TOKEN_ALGORITHM,
                f"tokens must be signed {self._algorithms[0]}, not {str(algorithm)[:20]!r}",
            )
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise refused(ErrorCode.TOKEN_EXPIRED, "the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise refused(
                ErrorCode.TOKEN_NOT_YET_VALID, "the token is not valid yet (nbf)"
            ) from None
        except jwt.InvalidAudienceError:
            raise refused(ErrorCode.TOKEN_AUDIENCE, "the token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise refused(ErrorCode.TOKEN_ISSUER, "the token is from another issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise refused(ErrorCode.TOKEN_CLAIMS, f"the token has no {exc.claim!r} claim") from None
        except jwt.InvalidAlgorithmError:
            raise refused(ErrorCode.TOKEN_ALGORITHM, "the token's algorithm is refused") from None
        except jwt.PyJWTError:
            # A bad signature, a tampered payload, a malformed token: all the same to a client.
            raise refused(
                ErrorCode.TOKEN_INVALID, "the token's signature does not verify"
            ) from None
        return identity_of(claims)

    # -- rooms ----------------------------------------------------------------------------

    def check_join(self, identity: Identity | None, room: str) -> None:
        """Raises `forbidden_room` unless `identity` (None: anonymous) may join `room`, read
        its history and see its presence."""
        if self.may_join(identity, room):
            return
        if identity is None:
            raise refused(
                ErrorCode.FORBIDDEN_ROOM, f"room {room!r} is private: connect with a token"
            )
        raise refused(ErrorCode.FORBIDDEN_ROOM, f"your token does not let you into {room!r}")

    def may_join(self, identity: Identity | None, room: str) -> bool:
        """Whether `identity` may join `room` (and read it): `check_join` without the error."""
        if not self.enabled:
            return True
        if identity is None:
            return not matches(room, self.private)
        if identity.rooms is not None:
            return matches(room, identity.rooms)
        return not matches(room, self.private)

    def check_publish(self, identity: Identity | None, room: str) -> None:
        """Raises unless `identity` may post in `room` (`check_join` first)."""
        if not self.enabled:
            return
        self.check_join(identity, room)
        if identity is not None and identity.moderator:
            return
        if identity is not None and identity.publish is not None:
            if matches(room, identity.publish):
                return
            raise refused(ErrorCode.READ_ONLY_ROOM, f"your token does not let you post in {room!r}")
        if matches(room, self.read_only):
            raise refused(ErrorCode.READ_ONLY_ROOM, f"room {room!r} is read-only")

    def edit(self, identity: Identity | None, item_id: int) -> Edit:
        """The terms of an edit or deletion of item `item_id` asked by `identity`; the store
        judges them against the item (store.decide_change). Without a token, nothing."""
        if identity is None:
            raise refused(
                ErrorCode.UNAUTHORIZED,
                "editing and deleting need a token: only an item's author (by its token's "
                "sub) or a moderator may change it",
            )
        return Edit(item_id, identity.moderator, self.edit_window_ms)

    def private_room(self, room: str) -> bool:
        return self.enabled and matches(room, self.private)


def name_for(identity: Identity | None, given: str, default: str = "") -> str:
    """The name a client acts under: with a token, the token's (a `user` field that says
    otherwise is refused, never silently replaced); without, the one it gave."""
    if identity is None:
        return given
    if given != identity.name and given != default:
        raise refused(
            ErrorCode.NAME_MISMATCH,
            f"you are {identity.name!r} (your token's name), not {given[:64]!r}",
        )
    return identity.name


def identity_of(claims: dict[str, Any]) -> Identity:
    def strings(name: str) -> tuple[str, ...] | None:
        value = claims.get(name)
        if value is None:
            return None
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise refused(ErrorCode.TOKEN_CLAIMS, f"the token's {name!r} must be a list of strings")
        return tuple(value)

    sub, name = claims.get("sub"), claims.get("name", claims.get("sub"))
    if not isinstance(sub, str) or not sub or not isinstance(name, str) or not name.strip():
        raise refused(ErrorCode.TOKEN_CLAIMS, "the token's 'sub' and 'name' must be strings")
    if len(name) > 64 or not name.isprintable():
        raise refused(ErrorCode.TOKEN_CLAIMS, "the token's name must be 1-64 printable characters")
    exp = claims["exp"]
    return Identity(
        sub=sub,
        name=name,
        exp=float(exp),
        rooms=strings("rooms"),
        publish=strings("publish"),
        roles=frozenset(strings("roles") or ()),
    )


def public_key(path: str) -> tuple[Any, str]:
    """The key in the PEM file at `path` and its algorithm: RS256 for RSA, ES256 for EC
    P-256. Raises ValueError with a reason for people."""
    try:
        key = load_pem_public_key(Path(path).read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read AUTH_PUBLIC_KEY {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ValueError(f"AUTH_PUBLIC_KEY {path} is not a PEM public key: {exc}") from None
    if isinstance(key, rsa.RSAPublicKey):
        return key, "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
        return key, "ES256"
    raise ValueError(f"AUTH_PUBLIC_KEY {path}: an RSA or EC P-256 key is needed")


def mint(
    key: Any,
    *,
    sub: str,
    name: str | None = None,
    ttl: float = 3600.0,
    roles: Iterable[str] = (),
    rooms: Iterable[str] | None = None,
    publish: Iterable[str] | None = None,
    audience: str | None = None,
    issuer: str | None = None,
    algorithm: str = "HS256",
    now: float | None = None,
) -> str:
    """A token for `sub`, signed with `key` (the secret for HS256, a private key for RS256
    or ES256): for `fastchat token`, tests, and small setups."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"sub": sub, "iat": issued, "exp": issued + int(ttl)}
    if name is not None:
        claims["name"] = name
    if roles:
        claims["roles"] = list(roles)
    if rooms is not None:
        claims["rooms"] = list(rooms)
    if publish is not None:
        claims["publish"] = list(publish)
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, key, algorithm=algorithm)
