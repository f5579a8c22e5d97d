/* Sending a message: checks it against the server's limits (from GET /api/config, waited for
 * if not loaded yet), streams the reply from /api/chat/stream into bubbles, tool cards and
 * question cards, shows "thinking" until the first sign of a reply, posts Approve / Reject
 * answers, and owns Send and Stop (Stop, or Escape, ends the reply and keeps what was said). */

import { postJSON } from "./api.js";
import { attachedLabels, attachments, clearAttachments } from "./attach.js";
import { fitInput } from "./composer.js";
import { historyLimits, loadConfig } from "./config.js";
import { $ } from "./dom.js";
import { recentHistory } from "./history.js";
import {
  addItem,
  addQuestion,
  nearBottom,
  removeItem,
  rerender,
  renderAll,
  scrollDown,
  showThinking,
} from "./render.js";
import { refreshServers, showUnavailable, webReachable } from "./servers.js";
import { readSSE } from "./sse.js";
import { clear, cutOff, save, state } from "./state.js";

const inputEl = $("input");
const sendBtn = $("send");
const stopBtn = $("stop");
const askBox = $("ask-approval");
const STOP_GRACE_MS = 5000; // how long Stop waits for web.py's `done` before cutting the stream

// the send in progress: { controller, turnId, stopping, said } (said: the reply's text so far)
let active = null;

export function updateSendButton() {
  sendBtn.disabled = active !== null || historyLimits() === null || !webReachable();
  stopBtn.hidden = active === null;
  stopBtn.disabled = active === null || active.stopping === true; // each reply's own Stop
  sendBtn.hidden = active !== null;
}

export const replying = () => active !== null;

export async function send(text) {
  // web.py not answering (the banner says so): the message stays in the box until it is back
  if (active || !text.trim() || !webReachable()) return;
  const me = (active = { controller: new AbortController(), turnId: null, said: "" });
  updateSendButton();
  showThinking(true);
  try {
    const limits = historyLimits() || (await loadConfig());
    if (active !== me) return; // "New chat" while the config was loading
    if (!limits) {
      addItem({
        kind: "error",
        text:
          "Cannot send yet: the page has no history limits from web.py (GET /api/config). " +
          "Please try again.",
      });
      return;
    }
    const chars = Array.from(text).length;
    if (chars > limits.maxMessageChars) {
      addItem({
        kind: "error",
        text:
          `Your message has ${chars} characters; ` +
          `the limit is ${limits.maxMessageChars}. Please shorten it.`,
      });
      return;
    }
    await stream(text, limits, me);
  } finally {
    showThinking(false);
    if (active === me) active = null;
    updateSendButton();
  }
}

/* Stop (the button or Escape): web.py ends the turn and still sends `done` with a history
 * the next turn accepts; a server without the route (or silent) has its stream cut. */
export async function stop() {
  const me = active;
  if (!me || me.stopping) return;
  me.stopping = true;
  stopBtn.disabled = true;
  const cut = () => {
    if (active === me) me.controller.abort();
  };
  if (!me.turnId) return cut();
  try {
    const r = await postJSON("/api/chat/stop", { turnId: me.turnId });
    if (!r.ok) return cut(); // already finished, or an older web.py
    setTimeout(cut, STOP_GRACE_MS);
  } catch (e) {
    cut();
  }
}

async function stream(text, limits, me) {
  const approval = askBox.checked ? "ask" : "auto";
  const history = recentHistory(state.history, { message: text, history: [], approval }, limits);
  const attached = attachments();
  const sent = [addItem({ kind: "user", text })]; // taken back if web.py refuses the request
  if (attached.length) sent.push(addItem({ kind: "note", text: `Attached: ${attachedLabels().join(", ")}` }));
  save();
  inputEl.value = "";
  fitInput();
  let bubble = null; // the assistant item receiving tokens right now
  let pendingPaint = false;
  const cards = new Map();
  const questions = new Map();
  let finished = false;
  let textSinceTools = false;
  let response = null; // web.py's answer to the request, once it came
  const paint = () => {
    if (pendingPaint) return;
    pendingPaint = true;
    requestAnimationFrame(() => {
      pendingPaint = false;
      if (bubble) rerender(bubble);
      scrollDown();
    });
  };
  const closeBubble = () => {
    if (bubble) {
      bubble.live = false;
      rerender(bubble);
    }
    bubble = null;
  };
  const card = (d) => cards.get(d.id) || addItem({ kind: "tool", ...pick(d) });
  // The message back in the box (if the box is still empty) and out of the conversation.
  const giveBack = () => {
    if (inputEl.value) return false;
    inputEl.value = text;
    fitInput();
    for (const item of sent) removeItem(item);
    return true;
  };
  // A turn cut without web.py's `done`: keep what was said, with a note, and a history the
  // next turn accepts.
  const keepSaid = (note, nothingSaid) => {
    closeBubble();
    addItem({ kind: "note", text: `${note} What was said so far is kept.` });
    state.history = history.concat([
      { role: "user", content: text },
      { role: "assistant", content: me.said.trim() || nothingSaid },
    ]);
  };
  // The page goes (a reload, a closed tab) mid-reply: kept as Stop keeps it (the reply's
  // words were saved only when the turn ended, so a reload lost them all). The request then
  // fails ("network error"): no failure to report, and, saved after the note, it replaced it.
  // On a reload it can fail before `pagehide`, so `beforeunload` counts too.
  let left = false;
  // Calls and questions still open when the turn ends without `done`: Stop ("stopped"), the
  // page going ("left": web.py cancels them; state.cutOff says whether nothing was done) or
  // the stream cut ("cut": web.py failed or is gone, not the page).
  const settle = (why) => {
    for (const item of cards.values()) {
      if (item.status === "approval" || item.status === "running") {
        if (why === "left") cutOff(item, [...questions.values()]);
        else {
          item.status = "error";
          item.error = item.error || (why === "stopped" ? "stopped by the user" : "The reply ended before this call finished.");
        }
        item.stopped = why === "stopped";
        item.approvalId = null;
        item.waiting = false;
        if (item.node && item.node.parentNode) rerender(item);
      }
    }
    for (const item of questions.values()) {
      if (!item.action && !item.closedReason) {
        item.closedReason = why === "stopped" ? "stopped" : "interrupted";
        if (item.node && item.node.parentNode) rerender(item);
      }
    }
  };
  const leave = () => {
    if (finished || left) return;
    left = true;
    me.controller.abort(); // nothing more of the reply lands after the note
    keepSaid("Interrupted: the page was left.", "(interrupted before answering)");
    settle("left"); // here, while the questions' answers are known
    save();
  };
  addEventListener("beforeunload", leave);
  addEventListener("pagehide", leave);
  const handlers = {
    turn(d) {
      me.turnId = typeof d.turnId === "string" ? d.turnId : null;
    },
    servers_unavailable(d) {
      showUnavailable(Array.isArray(d.servers) ? d.servers : []);
    },
    token(d) {
      showThinking(false);
      textSinceTools = true;
      if (!bubble) bubble = addItem({ kind: "assistant", text: "", live: true });
      bubble.text += d.text;
      me.said += d.text;
      paint();
    },
    tool_call(d) {
      showThinking(false);
      closeBubble();
      textSinceTools = false;
      cards.set(d.id, addItem({ kind: "tool", status: "running", ...pick(d) }));
      save();
    },
    approval_required(d) {
      showThinking(false);
      const item = card(d);
      item.status = "approval";
      item.approvalId = d.approvalId;
      rerender(item);
      item.node.querySelector("button.approve")?.focus();
      scrollDown();
    },
    progress(d) {
      const item = cards.get(d.id);
      if (!item || item.status !== "running") return;
      item.progress = { progress: Number(d.progress) || 0, total: d.total ?? null, message: d.message ?? null };
      const follow = nearBottom(); // the bar makes the card taller: keep the end in sight
      rerender(item);
      if (follow) scrollDown();
    },
    elicitation(d) {
      showThinking(false);
      closeBubble();
      const tool = cards.get(d.id);
      if (tool) {
        tool.waiting = true;
        rerender(tool);
      }
      questions.set(d.elicitationId, addQuestion({ kind: "elicitation", request: d }));
    },
    elicitation_done(d) {
      const item = questions.get(d.elicitationId);
      if (!item) return;
      item.action = item.action || d.action;
      item.closedReason = d.reason;
      rerender(item);
      const tool = cards.get(item.request.id);
      if (tool) {
        tool.waiting = false;
        rerender(tool);
      }
      save();
    },
    tool_result(d) {
      const item = card(d);
      item.approvalId = null;
      item.waiting = false;
      item.progress = null;
      item.durationMs = d.durationMs;
      if (d.server) item.server = d.server;
      if (d.tool) item.tool = d.tool;
      if (Array.isArray(d.content)) item.content = d.content; // pictures, sounds, resources
      if ("result" in d) {
        item.result = d.result;
        item.status = "ok";
      } else {
        item.error = d.error;
        item.stopped = !!d.stopped;
        item.unavailable = !!d.unavailable;
        item.status = d.rejected ? "rejected" : "error";
      }
      rerender(item);
      save();
    },
    done(d) {
      finished = true;
      showThinking(false);
      closeBubble();
      if (!textSinceTools && d.response) addItem({ kind: "assistant", text: d.response });
      if (d.stopped) addItem({ kind: "note", text: "Stopped. What was said so far is kept." });
      // attached resources stay in the history right before their message, so later turns
      // still see them (recentHistory drops the oldest first when the limits are reached)
      const kept = Array.isArray(d.attached) ? d.attached : [];
      state.history = history.concat(kept, [{ role: "user", content: text }], d.messages || []);
      save();
    },
    error(d) {
      finished = true;
      showThinking(false);
      closeBubble();
      addItem({ kind: "error", text: d.message || "Something went wrong" });
      save();
    },
  };
  try {
    const body = { message: text, history, approval };
    if (attached.length) body.attachments = attached;
    response = await postJSON("/api/chat/stream", body, me.controller.signal);
    if (response.ok) clearAttachments(); // a refused attachment stays, to remove or retry
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const err = await response.json();
        detail = typeof err.detail === "string" ? err.detail : JSON.stringify(err.detail);
      } catch (e) {
        /* keep statusText */
      }
      // Refused before the model saw it (an attachment, a limit, web.py failing): the
      // message goes back in the box, not retyped by hand, and out of the conversation
      if (giveBack()) detail += " (not sent: your message is back in the box)";
      handlers.error({ message: detail });
    } else {
      await readSSE(response, (event, data) => handlers[event] && handlers[event](data));
      if (!finished && !left) handlers.error({ message: "The reply stream ended unexpectedly." });
    }
  } catch (e) {
    if (left) return; // the page is going: what was said is kept (leave)
    if (e.name !== "AbortError" && !response) {
      // No answer at all (web.py down or gone): the model never saw it. Back in the box, to
      // send once the banner (asked for now) says the chat server is back.
      const back = giveBack();
      handlers.error({
        message:
          `Not sent: the chat server could not be reached (${e.message}). ` +
          (back ? "Your message is back in the box; send it again once the server is back." : "Please send it again once the server is back."),
      });
      refreshServers();
    } else if (e.name !== "AbortError") {
      handlers.error({ message: `The connection to the chat server was lost during the reply (${e.message}).` });
      refreshServers();
    } else if (me.stopping && !finished) keepSaid("Stopped.", "(stopped by the user before answering)");
  } finally {
    removeEventListener("beforeunload", leave);
    removeEventListener("pagehide", leave);
    settle(me.stopping ? "stopped" : "cut");
    save();
    inputEl.focus();
  }
}

function pick(d) {
  return { id: d.id, server: d.server, tool: d.tool, function: d.function, arguments: d.arguments };
}

/* A tool card's Approve / Reject. */
export async function answer(item, approved) {
  if (!item.approvalId) return;
  const id = item.approvalId;
  item.approvalId = null;
  item.status = "running";
  rerender(item);
  try {
    const r = await postJSON("/api/chat/approve", { approvalId: id, approved });
    if (!r.ok) throw new Error((await r.json()).detail || r.statusText);
  } catch (e) {
    item.status = "error";
    item.error = "Could not send your answer: " + e.message;
    rerender(item);
  }
}

/* "New chat": stops a reply that is streaming and forgets the conversation. */
export function newChat() {
  if (active) active.controller.abort();
  active = null;
  clear();
  showThinking(false);
  updateSendButton();
  renderAll();
  inputEl.focus();
}
