/* Live stock: the page keeps GET /api/events open (an EventSource; no polling) and moves every
 * stock badge (views.js stockBadge: span.stock[data-product-id][data-stock]) when web.py says
 * a server's stock changed, in the chat's cards and the tool panel alike. A badge belongs to
 * the server of the nearest [data-server] around it; badges drawn later keep their own result's
 * number (newer than any update heard before it). #live says whether updates are flowing: on
 * while the stream is open and a server's subscription is up; hidden while no server offers
 * it. After web.py refuses or ends the stream the page reconnects (EventSource, or a timer),
 * naming the last stock event it saw (Last-Event-ID, or ?after= on a new EventSource), so web.py
 * first sends what changed meanwhile. A stream can also die without an error (a laptop slept, a
 * NAT or proxy forgot the connection): EventSource would wait forever. Every stream says its
 * heartbeat period in a `ping` event and pings whenever it is idle that long; one silent for
 * SILENT_BEATS periods is closed and a new one opened, which catches up as above. A hidden
 * tab closes its stream and opens one, catching up, when shown again. */

import { $ } from "./dom.js";
import { setStock } from "./views.js";

const RECONNECT_MS = 10000; // after web.py refused or ended the stream for good
const SILENT_BEATS = 3; // heartbeat periods without a byte before a stream is taken for dead
const HEARTBEAT_S = 15; // until the stream's first ping says its own (web.py's events.py)
const serversLive = new Map(); // server -> whether its subscription is up
let streaming = false;
let lastId = ""; // the id of the last stock event heard (web.py's events.py)

const BADGE = "span.stock[data-product-id]";

/* `stock {server, items: [{productId, quantity}]}`: every badge of that server that shows a
 * changed product gets its new number. */
function onStock(data) {
  if (typeof data.server !== "string" || !Array.isArray(data.items)) return;
  const stock = new Map();
  for (const i of data.items) {
    if (Number.isInteger(i.productId) && Number.isInteger(i.quantity)) stock.set(i.productId, i.quantity);
  }
  for (const badge of document.querySelectorAll(BADGE)) {
    const holder = badge.closest("[data-server]");
    if (holder && holder.dataset.server !== data.server) continue;
    const n = stock.get(Number(badge.dataset.productId));
    if (n !== undefined && badge.dataset.stock !== String(n)) setStock(badge, n);
  }
}

function showIndicator() {
  const el = $("live");
  if (!el) return;
  const on = streaming && [...serversLive.values()].some(Boolean);
  el.hidden = serversLive.size === 0;
  el.dataset.on = String(on);
  el.textContent = on ? "Live stock" : "Stock not live";
  el.title = on
    ? "Stock on this page changes as soon as anyone buys or restocks"
    : "Stock updates are paused (connection lost); they resume by themselves";
}

function parse(ev) {
  try {
    return JSON.parse(ev.data);
  } catch (e) {
    return null;
  }
}

let stopStream = null; // closes the stream open now (and its timers), if any

function connect() {
  if (document.visibilityState === "hidden") return; // opened when the tab is shown
  const url = lastId ? `/api/events?after=${encodeURIComponent(lastId)}` : "/api/events";
  const source = new EventSource(url);
  let heartbeat = HEARTBEAT_S;
  let watchdog = 0;
  let retry = 0;
  stopStream = () => {
    clearTimeout(watchdog);
    clearTimeout(retry);
    source.close();
    stopStream = null;
    streaming = false;
    showIndicator();
  };
  // Every event proves the stream alive; silence for SILENT_BEATS periods ends it.
  const alive = () => {
    clearTimeout(watchdog);
    watchdog = setTimeout(() => {
      stopStream();
      connect();
    }, heartbeat * SILENT_BEATS * 1000);
  };
  alive(); // also bounds a connection that never opens
  source.addEventListener("open", () => {
    streaming = true;
    showIndicator();
    alive();
  });
  source.addEventListener("error", () => {
    streaming = false;
    showIndicator();
    if (source.readyState === EventSource.CLOSED) {
      clearTimeout(watchdog);
      retry = setTimeout(() => {
        stopStream?.();
        connect();
      }, RECONNECT_MS);
    }
  });
  source.addEventListener("ping", (ev) => {
    if (ev.lastEventId) lastId = ev.lastEventId; // the first names where the stream began
    const d = parse(ev);
    if (d && Number.isFinite(d.heartbeat)) heartbeat = Math.min(Math.max(d.heartbeat, 0.1), 3600);
    alive();
  });
  source.addEventListener("live", (ev) => {
    alive();
    const d = parse(ev);
    if (!d || typeof d.server !== "string") return;
    serversLive.set(d.server, d.on === true);
    showIndicator();
  });
  source.addEventListener("stock", (ev) => {
    alive();
    const d = parse(ev);
    if (ev.lastEventId) lastId = ev.lastEventId;
    if (d) onStock(d);
  });
}

/* A hidden tab gives its stream up and catches up when shown (`?after=`): each tab held one
 * connection, and Chromium allows 6 per host over HTTP/1.1, so a 7th tab's chat waited for a
 * free one ("Thinking…" until another tab closed; found from outside). */
export function startLive() {
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") stopStream?.();
    else if (!stopStream) connect();
  });
  connect();
}
