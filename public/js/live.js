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
 * SILENT_BEATS periods is closed and a new one opened, which catches up as above.
 *
 * One stream for all the tabs of a browser: Chromium allows 6 connections per host over
 * HTTP/1.1, and a tab's stream held one for good, so with six tabs shown a seventh tab's chat
 * never left the browser (found from outside). One visible tab leads (it holds a Web Lock and
 * the stream) and tells the others what it hears over a BroadcastChannel; when it is hidden or
 * closed, the lock passes to another visible tab, which opens a stream that catches up from
 * the last event every tab heard. With no tab visible there is no stream; the first tab shown
 * again catches up. Where Web Locks are missing (a page served over plain http to another
 * machine is not a secure context) each tab keeps its own stream while it is shown. */

import { $ } from "./dom.js";
import { setStock } from "./views.js";

const RECONNECT_MS = 10000; // after web.py refused or ended the stream for good
const SILENT_BEATS = 3; // heartbeat periods without a byte before a stream is taken for dead
const HEARTBEAT_S = 15; // until the stream's first ping says its own (web.py's events.py)
const SHARED = "product-mcp-live"; // the Web Lock and BroadcastChannel of the leading tab
const serversLive = new Map(); // server -> whether its subscription is up
let streaming = false;
let lastId = ""; // the id of the last stock event heard (web.py's events.py)
let channel = null; // to the other tabs, when they share one stream
let resign = null; // while this tab leads: ends its stream and hands the lock on
let asking = null; // while this tab waits for the lock: aborts its request (hidden meanwhile)

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

/* What the stream said, applied here and, when this tab leads, in every other tab. */
function tell(msg) {
  apply(msg);
  if (resign) channel?.postMessage(msg);
}

function apply(msg) {
  if (typeof msg !== "object" || msg === null) return;
  if (typeof msg.id === "string" && msg.id) lastId = msg.id;
  if (msg.kind === "streaming") streaming = msg.on === true;
  else if (msg.kind === "live" && typeof msg.server === "string") serversLive.set(msg.server, msg.on === true);
  else if (msg.kind === "stock" && msg.data) onStock(msg.data);
  else if (msg.kind === "state" && Array.isArray(msg.servers)) {
    streaming = msg.streaming === true;
    for (const [server, on] of msg.servers) if (typeof server === "string") serversLive.set(server, on === true);
  } else if (msg.kind === "hello") {
    if (resign) channel?.postMessage(state()); // a new tab: what this one knows so far
    return;
  }
  showIndicator();
}

function state() {
  return { kind: "state", streaming, servers: [...serversLive], id: lastId };
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
    tell({ kind: "streaming", on: false });
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
    tell({ kind: "streaming", on: true });
    alive();
  });
  source.addEventListener("error", () => {
    tell({ kind: "streaming", on: false });
    if (source.readyState === EventSource.CLOSED) {
      clearTimeout(watchdog);
      retry = setTimeout(() => {
        stopStream?.();
        connect();
      }, RECONNECT_MS);
    }
  });
  source.addEventListener("ping", (ev) => {
    if (ev.lastEventId) tell({ kind: "id", id: ev.lastEventId }); // where the stream began
    const d = parse(ev);
    if (d && Number.isFinite(d.heartbeat)) heartbeat = Math.min(Math.max(d.heartbeat, 0.1), 3600);
    alive();
  });
  source.addEventListener("live", (ev) => {
    alive();
    const d = parse(ev);
    if (d && typeof d.server === "string") tell({ kind: "live", server: d.server, on: d.on === true });
  });
  source.addEventListener("stock", (ev) => {
    alive();
    const d = parse(ev);
    if (d) tell({ kind: "stock", data: d, id: ev.lastEventId });
  });
}

/* This tab asks to lead while it is shown; the lock is granted when no other tab holds it. */
function ask() {
  if (asking || resign || document.visibilityState === "hidden") return;
  const waiting = new AbortController();
  asking = waiting;
  navigator.locks
    .request(SHARED, { signal: waiting.signal }, () => {
      asking = null;
      if (document.visibilityState === "hidden") return undefined; // hidden meanwhile: pass
      return new Promise((release) => {
        resign = () => {
          stopStream?.(); // the others hear "not streaming" before the lock moves on
          resign = null;
          release();
        };
        connect();
      });
    })
    .catch(() => {
      // Aborted (hidden before its turn: a shown tab goes first), or locks refused here (a
      // sandboxed frame): then this tab keeps a stream of its own while shown.
      if (asking !== waiting) return;
      asking = null;
      if (!waiting.signal.aborted && !stopStream) connect();
    });
}

/* A hidden tab gives its stream up (its lead, when shared) and catches up when shown
 * (`?after=`): see the top of this file. */
export function startLive() {
  const shared = typeof BroadcastChannel === "function" && navigator.locks?.request;
  if (shared) {
    channel = new BroadcastChannel(SHARED);
    channel.onmessage = (m) => apply(m.data);
    channel.postMessage({ kind: "hello" });
  }
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") {
      if (shared) {
        asking?.abort(); // shown tabs go first
        asking = null;
        resign?.();
        stopStream?.(); // a stream of its own (locks refused)
      } else stopStream?.();
    } else if (shared) ask();
    else if (!stopStream) connect();
  });
  window.addEventListener("pagehide", () => resign?.()); // closing: say so, pass the lead on
  window.addEventListener("pageshow", (e) => e.persisted && shared && ask()); // back from cache
  if (shared) ask();
  else connect();
}
