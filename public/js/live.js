/* Live stock: the page keeps GET /api/events open (an EventSource; no polling) and moves every
 * stock badge (views.js stockBadge: span.stock[data-product-id][data-stock]) when web.py says
 * a server's stock changed, in the chat's cards and the tool panel alike. A badge belongs to
 * the server of the nearest [data-server] around it. Badges drawn later (a redrawn history)
 * get the latest known number too. #live says whether updates are flowing: on while the
 * stream is open and a server's subscription is up; hidden while no server offers it. */

import { $ } from "./dom.js";
import { setStock } from "./views.js";

const RECONNECT_MS = 10000; // after web.py refused or ended the stream for good
const latest = new Map(); // server -> Map(productId -> quantity)
const serversLive = new Map(); // server -> whether its subscription is up
let streaming = false;

const BADGE = "span.stock[data-product-id]";

function badgesIn(node) {
  return node.matches(BADGE) ? [node] : [...node.querySelectorAll(BADGE)];
}

/* Sets each of `list` that belongs to `server` to its latest known number. */
function apply(list, server) {
  const stock = latest.get(server);
  if (!stock) return;
  for (const badge of list) {
    const holder = badge.closest("[data-server]");
    if (holder && holder.dataset.server !== server) continue;
    const n = stock.get(Number(badge.dataset.productId));
    if (n !== undefined && badge.dataset.stock !== String(n)) setStock(badge, n);
  }
}

function onStock(data) {
  if (typeof data.server !== "string" || !Array.isArray(data.items)) return;
  const stock = latest.get(data.server) || new Map();
  latest.set(data.server, stock);
  for (const i of data.items) {
    if (Number.isInteger(i.productId) && Number.isInteger(i.quantity)) stock.set(i.productId, i.quantity);
  }
  apply(document.querySelectorAll(BADGE), data.server);
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

function connect() {
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => {
    streaming = true;
    showIndicator();
  });
  source.addEventListener("error", () => {
    streaming = false;
    showIndicator();
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, RECONNECT_MS);
  });
  source.addEventListener("live", (ev) => {
    const d = parse(ev);
    if (!d || typeof d.server !== "string") return;
    serversLive.set(d.server, d.on === true);
    showIndicator();
  });
  source.addEventListener("stock", (ev) => {
    const d = parse(ev);
    if (d) onStock(d);
  });
}

export function startLive() {
  const watch = new MutationObserver((records) => {
    if (!latest.size) return;
    for (const r of records) {
      for (const node of r.addedNodes) {
        if (node.nodeType !== Node.ELEMENT_NODE) continue;
        const list = badgesIn(node);
        if (list.length) for (const server of latest.keys()) apply(list, server);
      }
    }
  });
  for (const id of ["messages", "runner-view"]) {
    if ($(id)) watch.observe($(id), { childList: true, subtree: true });
  }
  connect();
}
