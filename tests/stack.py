"""The one way to get a running stack of real processes for a test, always stopped after.

    with Stack(tmp_path) as s:          # in a test
        api = s.api()
        mcp = s.mcp(api)
        web = s.web({"shop": {"url": f"{mcp.url}/mcp"}}, {"OPENAI_API_KEY": "k"})

    @stack_fixture                      # a module-scoped fixture named `shop`
    def shop(s: Stack) -> None:
        s.mcp(s.api())

Every service gets a free loopback port; every stack its own temp folder, so its own SQLite
file and mcp.json. What it starts is kept by name (`s["mcp"]`, `s["fake"]`), and `close()`
(the end of the `with`, or of the fixture) stops everything the stack ever started, newest
first, including services restarted mid-test. Use it only where the process is the point
(transports, crashes, restarts, load, the browser); contract tests run in process
(tests/inproc.py).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from product_mcp.shop import Shop, make_engine
from tests.fake_llm import FakeLLM
from tests.servers import Service, free_port, start_api, start_mcp, start_mini
from tests.slow_api import SlowApi
from tests.web_helpers import start_web, write_config

Product = tuple[str, float, str, int]  # name, price, description, stock


def seed_db(db: Path | str, products: Sequence[Product]) -> None:
    """Create the shop database (a SQLite file or a URL) with the seed and then `products`
    (ids 5, 6, ...)."""
    shop = Shop(make_engine(db if isinstance(db, str) else f"sqlite:///{db}"))
    shop.init()
    shop.add_products(list(products))
    shop.engine.dispose()


class Stack:
    """Named services on free loopback ports, in one temp folder; `close()` stops them all."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.parts: dict[str, Any] = {}  # Services, and the FakeLLM/SlowApi threads
        self._ports: dict[str, int] = {}
        self._cleanup = ExitStack()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getitem__(self, name: str) -> Any:
        return self.parts[name]

    def get(self, name: str) -> Any:
        return self.parts.get(name)

    def close(self) -> None:
        self._cleanup.close()

    def on_close(self, stop: Callable[[], object]) -> None:
        """Run `stop` when the stack closes (for helpers a test starts itself)."""
        self._cleanup.callback(stop)

    def add(self, name: str, svc: Service) -> Service:
        """Keep a service started elsewhere under `name`, and stop it with the stack."""
        self.parts[name] = svc
        self._cleanup.callback(svc.stop)
        return svc

    def port(self, name: str) -> int:
        """A free port kept for service `name`, which a test starts later (the same each time)."""
        return self._ports.setdefault(name, free_port())

    def db(self, name: str = "api") -> Path:
        return self.tmp / f"{name}.db"

    # --- the services -------------------------------------------------------------------

    def api(
        self,
        name: str = "api",
        *,
        products: Sequence[Product] = (),
        extra: Sequence[str] = (),
        database_url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Service:
        """api.py on this stack's `<name>.db` (or on `database_url`, e.g. a PostgreSQL
        database of tests/databases.py), seeded with extra `products` if given."""
        db: Path | str = database_url or self.db(name)
        if products:
            seed_db(db, products)
        return self.add(name, start_api(db, extra=extra, env=env))

    def mcp(
        self,
        api: Service | str,
        name: str = "mcp",
        *,
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> Service:
        """main.py against an api.py (a Service, or any base URL such as a proxy's)."""
        url = api if isinstance(api, str) else api.url
        return self.add(name, start_mcp(url, extra=extra, env=env))

    def mini(self, *flags: str, name: str = "mini") -> Service:
        """tests/mini_mcp.py, the small MCP server with odd tools (on `port(name)` if kept)."""
        return self.add(name, start_mini(*flags, port=self._ports.get(name)))

    def web(
        self, servers: dict[str, Any], env: dict[str, str] | None = None, name: str = "web"
    ) -> Service:
        """web.py with an mcp.json of `servers` written into this stack's folder."""
        config = write_config(self.tmp / f"{name}-mcp.json", servers)
        return self.add(name, start_web(config, env))

    def restart(self, name: str, sig: int = signal.SIGTERM) -> Service:
        """Stop service `name` (with `sig`) and start it again on the same port."""
        return self.add(name, self.parts[name].restart(sig))

    # --- in-process helpers that still need stopping -------------------------------------

    def fake_llm(self, name: str = "fake") -> FakeLLM:
        """The scripted OpenAI-compatible server (a thread of this process)."""
        fake = self.parts[name] = FakeLLM().start()
        self.on_close(fake.stop)
        return fake

    def slow_api(
        self, target: Service | str, delays: dict[str, float], name: str = "proxy"
    ) -> SlowApi:
        """A delaying proxy in front of an api.py (a thread of this process)."""
        url = target if isinstance(target, str) else target.url
        proxy = self.parts[name] = SlowApi(url, delays).start()
        self.on_close(proxy.stop)
        return proxy


def stack_fixture(build: Callable[[Stack], object] | None = None, *, scope: str = "module") -> Any:
    """Turn `build(stack)` into a pytest fixture of the same name that yields the Stack.

    `@stack_fixture` gives a module-scoped fixture; `@stack_fixture(scope="function")` one
    per test. Whatever `build` started is stopped when the fixture ends, even if it failed.
    """

    def wrap(fn: Callable[[Stack], object]) -> Any:
        def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
            with Stack(tmp_path_factory.mktemp(fn.__name__)) as stack:
                fn(stack)
                yield stack

        fixture.__doc__ = fn.__doc__
        return pytest.fixture(scope=scope, name=fn.__name__)(fixture)  # type: ignore[call-overload]

    return wrap(build) if build is not None else wrap
