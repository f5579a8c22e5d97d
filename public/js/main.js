/* The chat page's entry point (index.html loads only this): wires the composer, New chat and
 * the approval checkbox to the modules, shows the config (model, banner), redraws the saved
 * conversation and polls the servers panel.
 *
 * Untrusted text (model replies, tool results, tool descriptions, server errors) only ever
 * reaches the DOM as Text nodes, via textContent or markdown.js. No innerHTML anywhere. */

import { answer, newChat, send, updateSendButton } from "./chat.js";
import { historyLimits, loadConfig, onConfig } from "./config.js";
import { $ } from "./dom.js";
import { onAnswer, renderAll } from "./render.js";
import { refreshServers } from "./servers.js";
import { load } from "./state.js";

const REFRESH_MS = 4000; // how often the servers panel (and a config that failed) is retried

onConfig((cfg, missing) => {
  $("model").textContent = cfg.llmConfigured ? `model: ${cfg.model}` : "";
  $("ask-approval").checked = cfg.toolApproval !== "auto";
  const notes = [];
  if (!cfg.llmConfigured && cfg.llmMessage) notes.push(cfg.llmMessage);
  for (const e of cfg.configErrors || []) notes.push(e);
  if (missing.length) {
    const names = missing.join(", ");
    notes.push(`web.py sent no history limit ${names}: the page cannot send messages.`);
  }
  const banner = $("banner");
  banner.textContent = notes.join("\n");
  banner.hidden = notes.length === 0;
  updateSendButton();
});

onAnswer(answer);

const inputEl = $("input");
$("composer").addEventListener("submit", (ev) => {
  ev.preventDefault();
  send(inputEl.value);
});
inputEl.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    send(inputEl.value);
  }
});
$("new-chat").addEventListener("click", newChat);

load();
renderAll();
loadConfig();
refreshServers();
setInterval(() => {
  refreshServers();
  if (historyLimits() === null) loadConfig();
}, REFRESH_MS);
