"""API keys and page tokens (billing/api/keys.py, billing/api/paging.py): pure logic, a store in a
dict. A key is accepted only whole, unrevoked and with its own secret; a token only as issued."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from billing.api.keys import authenticate, bearer_key, create_key, parse_key, secret_hash
from billing.api.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, decode_token, encode_token, page_size
from billing.api.pricing_service import parse_plan_id
from invoicing.ledger.api_keys import ApiKey
from rating.errors import InvalidValue

pytestmark = pytest.mark.unit
CREATED = datetime(2026, 1, 1, tzinfo=UTC)


class DictKeys:
    def __init__(self) -> None:
        self.keys: dict[str, ApiKey] = {}

    def add(self, key_id: str, tenant_id: str, name: str, secret_hash: bytes) -> ApiKey:
        self.keys[key_id] = ApiKey(key_id, tenant_id, name, secret_hash, CREATED)
        return self.keys[key_id]

    def get(self, key_id: str) -> ApiKey | None:
        return self.keys.get(key_id)

    def list(self, tenant_id: str | None = None) -> list[ApiKey]:
        return [k for k in self.keys.values() if tenant_id in (None, k.tenant_id)]

    def revoke(self, key_id: str) -> ApiKey | None:
        from dataclasses import replace

        self.keys[key_id] = replace(self.keys[key_id], revoked_at=CREATED)
        return self.keys[key_id]


def test_a_created_key_speaks_for_its_tenant_until_revoked_and_only_its_hash_is_stored() -> None:
    store = DictKeys()
    stored, key = create_key(store, "t1", "ci")
    presented = parse_key(key)
    assert presented is not None and presented.key_id == stored.key_id
    assert stored.secret_hash == secret_hash(presented.secret) and presented.secret.encode() not in stored.secret_hash
    assert authenticate(store, key) == "t1"
    _, other_key = create_key(store, "t2")
    assert other_key != key and authenticate(store, other_key) == "t2"
    store.revoke(stored.key_id)
    assert authenticate(store, key) is None
    assert authenticate(store, other_key) == "t2"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda key: None,
        lambda key: "",
        lambda key: key[:-1],
        lambda key: key + "0",
        lambda key: key[:-1] + ("0" if key[-1] != "0" else "1"),  # a wrong secret for a real key id
        lambda key: key.upper(),
        lambda key: key.replace("sbk_", "sk_"),
        lambda key: f"sbk_{'0' * 16}_{key[-64:]}",  # an unknown key id
    ],
)
def test_anything_but_the_whole_key_is_refused(mangle: object) -> None:
    store = DictKeys()
    _, key = create_key(store, "t1")
    assert authenticate(store, mangle(key)) is None  # type: ignore[operator]


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ([("authorization", "Bearer abc")], "abc"),
        ([("Authorization", "bearer   abc ")], "abc"),
        ([("user-agent", "x"), ("authorization", "Bearer abc")], "abc"),
        ([("authorization", "Basic abc")], None),
        ([("authorization", "Bearer")], None),
        ([("authorization", "Bearer a b")], None),
        ([("authorization-bin", b"Bearer abc")], None),
        ([], None),
        (None, None),
    ],
)
def test_the_bearer_key_of_call_metadata(metadata: list[tuple[str, str | bytes]] | None, expected: str | None) -> None:
    assert bearer_key(metadata) == expected


def test_page_tokens_round_trip_and_anything_else_names_page_token() -> None:
    cursor = ("pro/é@x", 7)
    assert decode_token(encode_token(cursor), (str, int)) == cursor
    assert decode_token("", (str, int)) is None
    for bad in (
        "%%%",
        "bm90IGpzb24",
        encode_token(("a",)),
        encode_token((1, "a")),
        encode_token((True, 1)),
        "A" * 2000,
    ):
        with pytest.raises(InvalidValue, match=r"^page_token: "):
            decode_token(bad, (str, int))


def test_page_sizes() -> None:
    assert (page_size(0), page_size(7), page_size(10**6)) == (DEFAULT_PAGE_SIZE, 7, MAX_PAGE_SIZE)
    with pytest.raises(InvalidValue, match=r"^page_size: "):
        page_size(-1)


def test_plan_ids() -> None:
    assert parse_plan_id("pro@2") == ("pro", 2)
    assert parse_plan_id("a@b@10") == ("a@b", 10)
    for bad in ("pro", "@1", "pro@", "pro@x", "pro@-1", "pro@" + "9" * 10):
        assert parse_plan_id(bad) is None
