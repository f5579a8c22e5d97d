"""The server's `SubscriptionBus`: in process, and across replicas through Redis pub/sub.

Why its own bus: the SDK's default bus (`InMemorySubscriptionBus`) keeps an event on the
replica that published it, so a tool's `ctx.notify_resource_updated` on replica A never
reached a `subscriptions/listen` stream held by replica B. With REDIS_URL (http_app.py calls
`attach`) `publish` delivers here at once and also PUBLISHes the event on one Redis channel
(`<REDIS_PREFIX>subscriptions`, tagged with this process's origin id); every replica's relay
(`relay`) delivers what arrives from the others and skips its own, so each listener on every
replica hears a published event exactly once. A bus event also reaches this replica's
handshake-era subscribers of the URI (the `bridge` live.py installs), so one publish serves
both protocol eras everywhere.

Not everything goes through Redis: the change-feed follower (live.py) runs on every replica
and already tells its own listeners, so it uses `publish_here` (this process only; synchronous,
so a stream that subscribes mid-burst gets all of a flush or none of it). While Redis is down
(redis_link.py says so once) a published event reaches this replica only: pub/sub keeps no
history, and a listen stream has no replay (clients re-read after reconnecting).

The same channel carries one message of another kind: "session S was taken" (restored or
deleted by the replica that sends it), on which every other replica drops its own copy of S
(shared_sessions.py), so a session is never served, nor its notifications written, twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio.lowlevel
from mcp.server.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)

if TYPE_CHECKING:  # redis is imported only by a server with REDIS_URL
    from product_mcp.mcp_server.redis_link import RedisLink

log = logging.getLogger("mcp.bus")
CHANNEL = "subscriptions"  # after the key prefix: one channel per deployment
_KINDS: dict[str, type[ServerEvent]] = {
    "tools": ToolsListChanged,
    "prompts": PromptsListChanged,
    "resources": ResourcesListChanged,
}


@dataclass(frozen=True)
class FeedUpdated(ResourceUpdated):
    """A change-feed update (live.py): the feed seq it stands for rides along to the stream."""

    seq: int | None = None


@dataclass(frozen=True)
class FeedListChanged(ResourcesListChanged):
    seq: int | None = None


@dataclass(frozen=True)
class SessionTaken:
    """Not a server event: a replica restored or deleted a legacy session, so every other
    replica drops its copy of it (shared_sessions.py)."""

    session_id: str
    deleted: bool = False  # deleted there (else: restored there, its copies here may finish)


def encode(origin: str, event: ServerEvent | SessionTaken) -> str:
    if isinstance(event, SessionTaken):
        message = {"o": origin, "k": "taken", "s": event.session_id, "d": event.deleted}
        return json.dumps(message)
    if isinstance(event, ResourceUpdated):
        return json.dumps({"o": origin, "k": "updated", "uri": event.uri})
    kind = next(k for k, t in _KINDS.items() if isinstance(event, t))
    return json.dumps({"o": origin, "k": kind})


def decode(data: bytes | str) -> tuple[str, ServerEvent | SessionTaken]:
    """(origin, event) of a channel message; ValueError if it is not one of ours."""
    try:
        message = json.loads(data)
        origin, kind = message["o"], message["k"]
        if kind == "updated" and isinstance(message["uri"], str):
            return str(origin), ResourceUpdated(uri=message["uri"])
        if kind == "taken" and isinstance(message["s"], str):
            return str(origin), SessionTaken(message["s"], message.get("d") is True)
        return str(origin), _KINDS[kind]()
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"not a bus message: {data[:200]!r}") from e


class ShopBus:
    """Listeners of this process; with a Redis link, also every other replica's."""

    def __init__(self) -> None:
        # Keyed by a token, as the SDK's bus does: one callable may subscribe twice.
        self._listeners: dict[object, Callable[[ServerEvent], None]] = {}
        self._bridges: list[Callable[[ServerEvent], None]] = []
        self._taken: list[Callable[[str, bool], None]] = []
        self._resubscribed: list[Callable[[], Awaitable[None]]] = []
        self.origin = uuid.uuid4().hex  # this process, in its channel messages
        self.link: RedisLink | None = None
        self.relayed = 0  # events received from other replicas (tests read it)

    @property
    def channel(self) -> str:
        return f"{self.link.prefix if self.link else ''}{CHANNEL}"

    # --- the SubscriptionBus protocol (the SDK's listen handler and ctx.notify_*) ------------

    async def publish(self, event: ServerEvent) -> None:
        """Here at once (listen streams and bridged legacy subscribers), then to the others."""
        self._deliver([event], bridged=True)
        link = self.link
        if link is not None:
            message = encode(self.origin, event)
            await link.run(lambda r: r.publish(self.channel, message), 0)
        await anyio.lowlevel.checkpoint()  # a burst of publishes lets streams drain

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        token = object()
        self._listeners[token] = listener

        def unsubscribe() -> None:
            self._listeners.pop(token, None)

        return unsubscribe

    # --- this process only ------------------------------------------------------------------

    def publish_here(self, events: Iterable[ServerEvent]) -> None:
        """To this process's listen streams only, all at once (the feed follower: every
        replica follows the feed and tells its own; its legacy subscribers it tells itself)."""
        self._deliver(list(events), bridged=False)

    def bridge(self, callback: Callable[[ServerEvent], None]) -> None:
        """Also hand every published or relayed event to `callback` (legacy fan-out)."""
        self._bridges.append(callback)

    def _deliver(self, events: list[ServerEvent], *, bridged: bool) -> None:
        targets = list(self._listeners.values()) + (self._bridges if bridged else [])
        for event in events:
            for listener in targets:
                try:
                    listener(event)
                except Exception:  # fan-out boundary: one bad listener must not starve others
                    log.exception("subscription listener raised; continuing")

    # --- across replicas --------------------------------------------------------------------

    async def session_taken(self, session_id: str, deleted: bool = False) -> None:
        """Tell the other replicas that `session_id` is served here now, or was deleted here:
        they drop their copies (`on_session_taken`). Lost while Redis is down, like events."""
        link = self.link
        if link is not None:
            message = encode(self.origin, SessionTaken(session_id, deleted))
            await link.run(lambda r: r.publish(self.channel, message), 0)

    def on_resubscribed(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Await `callback()` each time the relay's subscription is back after a reconnect
        (what was published while it was away is lost: pub/sub keeps no history)."""
        self._resubscribed.append(callback)

    def on_session_taken(self, callback: Callable[[str, bool], None]) -> Callable[[], None]:
        """Call `callback(session_id, deleted)` when another replica has taken a session;
        returns the call that stops it."""
        self._taken.append(callback)
        return lambda: self._taken.remove(callback) if callback in self._taken else None

    def attach(self, link: RedisLink) -> bool:
        """Share events through `link` (False if already sharing: a second app built in the
        same process leaves it alone)."""
        if self.link is not None:
            return False
        self.link = link
        return True

    def detach(self) -> None:
        self.link = None

    async def relay(self) -> None:
        """Deliver the other replicas' events here, forever; reconnects after a Redis outage
        (redis_link.py's retry pace; said once per outage, by the link)."""
        from redis.exceptions import RedisError

        from product_mcp.mcp_server.redis_link import REDIS_ERRORS, RETRY_S

        subscribed_before = False
        while self.link is not None and self.link.client is not None:
            link, client = self.link, self.link.client
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                link.answered()  # an outage said before ends here
                if subscribed_before:
                    for callback in list(self._resubscribed):
                        try:
                            await callback()
                        except Exception:  # a failed catch-up must not stop the relay
                            log.exception("resubscribe callback raised; continuing")
                subscribed_before = True
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._received(message["data"])
            except REDIS_ERRORS as e:
                link.failed(e, pause=False)  # says "does not answer" once per outage
                await asyncio.sleep(RETRY_S)
            except RedisError as e:  # e.g. an ACL without this channel: log, retry, serve on
                log.warning("bus relay: Redis refused the subscription: %s", e)
                await asyncio.sleep(RETRY_S)
            finally:
                with anyio.CancelScope(shield=True):
                    await _close(pubsub)

    def _received(self, data: Any) -> None:
        try:
            origin, event = decode(data)
        except ValueError as e:
            log.warning("%s", e)
            return
        if origin == self.origin:  # our own: delivered when published
            return
        if isinstance(event, SessionTaken):
            for callback in list(self._taken):
                try:
                    callback(event.session_id, event.deleted)
                except Exception:  # as in _deliver: one bad callback must not stop the relay
                    log.exception("session-taken callback raised; continuing")
            return
        self.relayed += 1
        self._deliver([event], bridged=True)


async def _close(pubsub: Any) -> None:
    try:
        await pubsub.aclose()
    except Exception as e:  # a connection already gone: nothing to close
        log.debug("closing the bus subscription: %r", e)
