"""The JWKS key cache: fetched when needed, at most once per interval, once for many
handshakes waiting together, and kept through an identity provider's outage."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import anyio
import httpx
import pytest

from app.edge.jwks import JwksUnavailable, KeySet
from tests.identity_provider import IdentityProvider

pytestmark = pytest.mark.anyio
URL = "https://idp.test/jwks"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Provider:
    """An identity provider behind an httpx mock transport; `down` makes it fail, `held`
    keeps each request waiting until released."""

    def __init__(self, idp: IdentityProvider) -> None:
        self.idp = idp
        self.requests = 0
        self.down = False
        self.held: anyio.Event | None = None

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.held is not None:
            await self.held.wait()
        if self.down:
            return httpx.Response(502)
        return httpx.Response(200, json=self.idp.jwks())


@pytest.fixture
def provider() -> Provider:
    return Provider(IdentityProvider("k1"))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def make_keys(provider: Provider, clock: Clock) -> AsyncIterator[Callable[..., KeySet]]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(provider.handle)) as http:

        def make(timeout: float = 5.0, max_age: float = 3600.0, refetch_interval: float = 10.0) -> KeySet:
            return KeySet(
                URL, http, timeout=timeout, max_age=max_age, refetch_interval=refetch_interval, clock=clock
            )

        yield make


async def test_keys_are_fetched_once_and_kept(make_keys: Callable[..., KeySet], provider: Provider) -> None:
    keys = make_keys()
    assert await keys.key("k1", "RS256") is not None
    assert await keys.key("k1", "RS256") is not None
    assert provider.requests == 1


async def test_an_unknown_key_id_refetches_at_most_once_per_interval(
    make_keys: Callable[..., KeySet], provider: Provider, clock: Clock
) -> None:
    keys = make_keys(refetch_interval=10.0)
    await keys.key("k1", "RS256")
    provider.idp.rotate("k2")
    clock.now += 9.0
    assert await keys.key("k2", "RS256") is None  # too soon after the last fetch
    assert provider.requests == 1
    clock.now += 1.0
    assert await keys.key("k2", "RS256") is not None  # rotated keys are found
    assert await keys.key("made-up", "RS256") is None
    assert provider.requests == 2


async def test_handshakes_waiting_together_share_one_fetch(
    make_keys: Callable[..., KeySet], provider: Provider
) -> None:
    keys = make_keys(refetch_interval=0.0)  # even with no interval at all
    provider.held = anyio.Event()
    found = []

    async def look_up() -> None:
        found.append(await keys.key("k1", "RS256"))

    async with anyio.create_task_group() as tasks:
        for _ in range(10):
            tasks.start_soon(look_up)
        await anyio.wait_all_tasks_blocked()  # one fetch in flight, nine waiting for it
        provider.held.set()
    assert provider.requests == 1
    assert len(found) == 10
    assert None not in found


async def test_an_outage_keeps_the_keys_held_and_is_not_hammered(
    make_keys: Callable[..., KeySet], provider: Provider, clock: Clock
) -> None:
    keys = make_keys(max_age=60.0, refetch_interval=10.0)
    await keys.key("k1", "RS256")
    provider.down = True
    clock.now += 60.0  # the keys are stale; the fetch fails
    assert await keys.key("k1", "RS256") is not None
    assert provider.requests == 2
    for _ in range(5):
        assert await keys.key("k1", "RS256") is not None
    assert provider.requests == 2  # one try per interval, not one per handshake


async def test_no_keys_at_all_is_unavailable_and_retried_once_per_interval(
    make_keys: Callable[..., KeySet], provider: Provider, clock: Clock
) -> None:
    keys = make_keys(refetch_interval=10.0)
    provider.down = True
    for _ in range(3):
        with pytest.raises(JwksUnavailable):
            await keys.key("k1", "RS256")
    assert provider.requests == 1
    provider.down = False
    clock.now += 10.0
    assert await keys.key("k1", "RS256") is not None


async def test_a_fetch_that_hangs_ends_at_the_timeout(
    make_keys: Callable[..., KeySet], provider: Provider
) -> None:
    keys = make_keys(timeout=0.1)
    provider.held = anyio.Event()  # never released
    with anyio.fail_after(5), pytest.raises(JwksUnavailable):
        await keys.key("k1", "RS256")


async def test_a_key_is_only_used_for_its_own_algorithm(
    make_keys: Callable[..., KeySet], provider: Provider
) -> None:
    keys = make_keys()
    assert await keys.key("k1", "ES256") is None  # an RSA key cannot verify ES256
    assert await keys.key("k1", "PS256") is None  # the JWK says alg RS256
    assert await keys.key(None, "RS256") is not None  # no kid: the only key
    provider.idp.publish("k2")
    keys = make_keys()
    assert await keys.key(None, "RS256") is None  # no kid and two keys: ambiguous


@pytest.mark.parametrize(
    "body",
    [{"keys": []}, {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "k1"}]}, {"no": "keys"}, ["k1"]],
    ids=["empty", "only-an-hmac-secret", "not-a-jwks", "a-list"],
)
async def test_a_jwks_without_signing_keys_is_a_failed_fetch(body: object) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    async with httpx.AsyncClient(transport=transport) as http:
        keys = KeySet(URL, http, timeout=5, max_age=3600, refetch_interval=10)
        with pytest.raises(JwksUnavailable):
            await keys.key("k1", "RS256")
