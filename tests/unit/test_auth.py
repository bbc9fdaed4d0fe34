"""Tokens and room rules (auth.py): every refusal with its stable code, and each way in."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fastchat.auth import Auth, Identity, mint, name_for, public_key
from fastchat.config import Settings
from fastchat.errors import HTTP_STATUS, ErrorCode, FastchatError

SECRET = "a-long-enough-test-secret-for-hs256-0123456789"


def hs(**settings: object) -> Auth:
    return Auth(Settings(auth_secret=SECRET, **settings))  # type: ignore[arg-type]


def code_of(auth: Auth, token: str) -> str:
    with pytest.raises(FastchatError) as refused:
        auth.verify(token)
    assert HTTP_STATUS[refused.value.code] == 401
    return refused.value.code


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pem_pair(tmp_path: Path, kind: str) -> tuple[object, Path]:
    key = (
        rsa.generate_private_key(65537, 2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    path = tmp_path / f"{kind}.pem"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key, path


# --------------------------------------------------------------------------- accepted


def test_a_good_token_gives_its_identity() -> None:
    token = mint(SECRET, sub="u1", name="Alice", roles=["moderator"], rooms=["team-*"])
    identity = hs().verify(token)
    assert identity.sub == "u1" and identity.name == "Alice"
    assert identity.rooms == ("team-*",) and identity.publish is None
    assert identity.moderator and identity.exp > time.time()


def test_the_name_is_the_sub_when_the_token_has_none() -> None:
    assert hs().verify(mint(SECRET, sub="bob")).name == "bob"


@pytest.mark.parametrize("kind, algorithm", [("rsa", "RS256"), ("ec", "ES256")])
def test_public_key_tokens(tmp_path: Path, kind: str, algorithm: str) -> None:
    private, path = pem_pair(tmp_path, kind)
    auth = Auth(Settings(auth_public_key=str(path)))
    token = mint(private, sub="carol", algorithm=algorithm)
    assert auth.verify(token).sub == "carol"
    # The same claims signed with a secret instead are refused: the family is the key's.
    assert code_of(auth, mint(SECRET, sub="carol")) == ErrorCode.TOKEN_ALGORITHM


def test_audience_and_issuer_are_checked_when_set() -> None:
    auth = hs(auth_audience="chat", auth_issuer="https://site.example")
    good = mint(SECRET, sub="u", audience="chat", issuer="https://site.example")
    assert auth.verify(good).sub == "u"
    assert code_of(
        auth, mint(SECRET, sub="u", audience="other", issuer="https://site.example")
    ) == (ErrorCode.TOKEN_AUDIENCE)
    assert code_of(auth, mint(SECRET, sub="u", audience="chat", issuer="https://evil")) == (
        ErrorCode.TOKEN_ISSUER
    )


# --------------------------------------------------------------------------- refused


def test_expired() -> None:
    token = mint(SECRET, sub="u", ttl=60, now=time.time() - 3600)
    assert code_of(hs(), token) == ErrorCode.TOKEN_EXPIRED


def test_not_yet_valid() -> None:
    token = jwt.encode({"sub": "u", "exp": time.time() + 7200, "nbf": time.time() + 3600}, SECRET)
    assert code_of(hs(), token) == ErrorCode.TOKEN_NOT_YET_VALID


def test_signed_with_another_secret() -> None:
    assert code_of(hs(), mint("another-secret-entirely-0123456789abcdef", sub="u")) == (
        ErrorCode.TOKEN_INVALID
    )


def test_a_tampered_payload() -> None:
    header, payload, signature = mint(SECRET, sub="u").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = ["admin"]
    forged = ".".join((header, b64(json.dumps(claims).encode()), signature))
    assert code_of(hs(), forged) == ErrorCode.TOKEN_INVALID


def test_alg_none() -> None:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": "u", "exp": time.time() + 60}).encode())
    assert code_of(hs(), f"{header}.{body}.") == ErrorCode.TOKEN_ALGORITHM


def test_hs_rs_confusion(tmp_path: Path) -> None:
    """The classic forgery: an HS256 token whose secret is the server's RSA public key."""
    _, path = pem_pair(tmp_path, "rsa")
    auth = Auth(Settings(auth_public_key=str(path)))
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": "u", "exp": time.time() + 60}).encode())
    import hashlib
    import hmac

    signature = hmac.new(path.read_bytes(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    assert code_of(auth, f"{header}.{body}.{b64(signature)}") == ErrorCode.TOKEN_ALGORITHM


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": 2**31},  # no sub
        {"sub": "u"},  # no exp
        {"sub": "u", "exp": 2**31, "rooms": 7},
        {"sub": "u", "exp": 2**31, "roles": [1]},
        {"sub": "u", "exp": 2**31, "name": "\u202eevil"},
    ],
)
def test_claims_of_the_wrong_shape(claims: dict[str, object]) -> None:
    assert code_of(hs(), jwt.encode(claims, SECRET)) == ErrorCode.TOKEN_CLAIMS


def test_garbage_and_empty() -> None:
    assert code_of(hs(), "not.a.jwt") == ErrorCode.TOKEN_INVALID
    assert code_of(hs(), "") == ErrorCode.TOKEN_INVALID
    assert code_of(hs(), "x" * 9000) == ErrorCode.TOKEN_INVALID


def test_no_tokens_without_a_secret() -> None:
    with pytest.raises(FastchatError) as refused:
        Auth(Settings()).verify(mint(SECRET, sub="u"))
    assert refused.value.code == ErrorCode.UNAUTHORIZED


# --------------------------------------------------------------------------- rooms, names


def identity(**fields: object) -> Identity:
    return Identity(sub="u", name="Ann", exp=time.time() + 60, **fields)  # type: ignore[arg-type]


def refusal(call: object, *args: object) -> str:
    with pytest.raises(FastchatError) as refused:
        call(*args)  # type: ignore[operator]
    assert HTTP_STATUS[refused.value.code] == 403
    return refused.value.code


def test_private_rooms_need_a_token_whose_rooms_match() -> None:
    auth = hs(private_rooms="team-*, staff")
    assert refusal(auth.check_join, None, "team-a") == ErrorCode.FORBIDDEN_ROOM
    assert refusal(auth.check_join, identity(), "staff") == ErrorCode.FORBIDDEN_ROOM
    auth.check_join(identity(rooms=("team-*",)), "team-a")
    auth.check_join(None, "general")  # public rooms stay open to anonymous clients
    # A token's `rooms` restricts public rooms too.
    assert refusal(auth.check_join, identity(rooms=("team-*",)), "general") == (
        ErrorCode.FORBIDDEN_ROOM
    )


def test_read_only_rooms_take_posts_from_publishers_and_moderators_only() -> None:
    auth = hs(read_only_rooms="news")
    assert refusal(auth.check_publish, None, "news") == ErrorCode.READ_ONLY_ROOM
    assert refusal(auth.check_publish, identity(), "news") == ErrorCode.READ_ONLY_ROOM
    auth.check_publish(identity(publish=("news",)), "news")
    auth.check_publish(identity(roles=frozenset({"moderator"})), "news")
    auth.check_publish(identity(), "general")
    # `publish` narrows: a token that may post only in news may not post in general.
    assert refusal(auth.check_publish, identity(publish=("news",)), "general") == (
        ErrorCode.READ_ONLY_ROOM
    )


def test_with_a_token_the_name_is_the_tokens() -> None:
    ann = identity()
    assert name_for(ann, "Ann") == "Ann"
    assert name_for(ann, "anonymous", "anonymous") == "Ann"  # left out: the token's
    assert refusal(name_for, ann, "Bob") == ErrorCode.NAME_MISMATCH
    assert name_for(None, "Bob") == "Bob"  # anonymous: as given


def test_the_settings_need_a_key_for_the_rules_and_only_one_key(tmp_path: Path) -> None:
    assert Settings(auth_required=True).problem()[0] == "auth_required"  # type: ignore[index]
    assert Settings(private_rooms="x").problem()[0] == "private_rooms"  # type: ignore[index]
    both = Settings(auth_secret=SECRET, auth_public_key="k.pem").problem()
    assert both is not None and both[0] == "auth_public_key"
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(ValueError, match="not a PEM public key"):
        public_key(str(bad))
    with pytest.raises(ValueError, match="cannot read"):
        public_key(str(tmp_path / "missing.pem"))


def test_secrets_never_show_in_the_settings_repr() -> None:
    shown = repr(
        Settings(
            auth_secret=SECRET,
            database_url="postgresql://chat:hunter2@db:5432/chat",
            broker_url="redis://:hunter3@cache:6379/0",
        )
    )
    assert SECRET not in shown and "hunter2" not in shown and "hunter3" not in shown
    assert "postgresql://chat:***@db:5432/chat" in shown
