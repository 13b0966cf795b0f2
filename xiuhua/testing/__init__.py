"""The pytest plugin for systems that integrate with Xiuhua: an embedded Xiuhua per test.

Enable it with `pytest -p xiuhua.testing` (or `pytest_plugins = ["xiuhua.testing"]` in your top-level
conftest.py); where the `xiuhua` package is installed it also loads by itself through its pytest11 entry
point. Nothing starts until a test asks for the `xiuhua` fixture:

    async def test_my_system_acknowledges(xiuhua):
        await xiuhua.publish(GridReport(...))
        dispatched = await xiuhua.wait_for("case.v1.dispatched", lead_unit__unit_id="CD-SAN")

Fixtures (override any of the `xiuhua_*` ones in your conftest.py):
- `xiuhua`: a `XiuhuaHarness` (`.client`, `.nats_url`, `.settings`, `publish`, `send_command`, `wait_for`);
- `xiuhua_services`: which services run (default all four);
- `xiuhua_city_dir`: the city folder (default `XIUHUA_CITY_DIR` or the demo city);
- `xiuhua_clock`: a clock for the services (default the system clock; give a `FrozenClock` to move time);
- `xiuhua_settings_overrides`: more settings for the services (e.g. `{"max_deliver": 3}`);
- `xiuhua_store_url` (session): the store; set `XIUHUA_TEST_MONGO_URL` to use your own MongoDB;
- `xiuhua_nats_url`: a fresh nats-server with JetStream on a free port, for one test, with the security model's
  users (`xiuhua.client_for("units")` connects as one; the passwords are in `<tmp>/xiuhua-var/security`).
The `xiuhua` fixture is async and needs pytest-asyncio: `pip install "xiuhua[testing]"`. Without it the plugin
still loads (an integrator's other tests run as before) and a test that asks for `xiuhua` fails saying so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

try:
    import pytest_asyncio
except ImportError:  # a plain `pip install xiuhua`: only the fixture that needs it is unavailable
    pytest_asyncio = None  # type: ignore[assignment]

from xiuhua.clock import Clock
from xiuhua.testing import servers
from xiuhua.testing.harness import XiuhuaHarness, embedded_xiuhua
from xiuhua.testing.memory_store import MemoryStore

__all__ = ["MemoryStore", "XiuhuaHarness", "embedded_xiuhua"]

NEEDS_ASYNCIO = 'the xiuhua fixture needs pytest-asyncio, which is not installed: pip install "xiuhua[testing]"'


@pytest.fixture(scope="session")
def xiuhua_store_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One store (nx-27017) for the session; each test's services get their own databases."""
    with servers.store_url(tmp_path_factory.mktemp("xiuhua-store")) as url:
        yield url


@pytest.fixture
def xiuhua_nats_url(tmp_path: Path) -> Iterator[str]:
    """A fresh nats-server with JetStream for one test (never port 4222), with the users and permissions that
    ship: the `xiuhua` fixture publishes each report and command as the user who sends it in production."""
    from xiuhua import embedded

    with servers.secured_nats(tmp_path / "xiuhua-var", tmp_path / "xiuhua-nats") as (srv, _):
        yield embedded.nats_url(srv)


@pytest.fixture
def xiuhua_services() -> tuple[str, ...] | None:
    """The services to run (None: all four)."""
    return None


@pytest.fixture
def xiuhua_city_dir() -> Path | None:
    """The city folder (None: XIUHUA_CITY_DIR or the demo city)."""
    return None


@pytest.fixture
def xiuhua_clock() -> Clock | None:
    """The services' clock (None: the system clock)."""
    return None


@pytest.fixture
def xiuhua_settings_overrides() -> dict[str, Any]:
    """Extra settings for the services."""
    return {}


async def _xiuhua(
    xiuhua_nats_url: str,
    xiuhua_store_url: str,
    xiuhua_services: tuple[str, ...] | None,
    xiuhua_city_dir: Path | None,
    xiuhua_clock: Clock | None,
    xiuhua_settings_overrides: dict[str, Any],
    tmp_path: Path,
) -> AsyncIterator[XiuhuaHarness]:
    """An embedded Xiuhua: bus, store, streams and services running for this test."""
    async with embedded_xiuhua(
        xiuhua_nats_url,
        xiuhua_store_url,
        tmp_path / "xiuhua-var",
        city_dir=xiuhua_city_dir,
        clock=xiuhua_clock,
        services=xiuhua_services,
        **xiuhua_settings_overrides,
    ) as harness:
        yield harness


if pytest_asyncio is not None:
    xiuhua = pytest_asyncio.fixture(_xiuhua, name="xiuhua")
else:

    @pytest.fixture(name="xiuhua")
    def _no_xiuhua() -> None:
        """Stands in for the `xiuhua` fixture where pytest-asyncio is missing: fails with what to install."""
        pytest.fail(NEEDS_ASYNCIO, pytrace=False)
