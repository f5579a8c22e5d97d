/* The chat page's entry point (index.html loads only this): wires the composer, Stop and
 * Escape, New chat, the approval checkbox and the phone's servers drawer to the modules,
 * shows the config (model, currency, banner), redraws the saved conversation, polls the
 * servers panel and starts live stock (js/live.js).
 *
 * Untrusted text (model replies, tool results, tool descriptions, server errors) only ever
 * reaches the DOM as Text nodes, via textContent or markdown.js. No innerHTML anywhere. */

import { refreshResources, setupAttach } from "./attach.js";
import { answer, newChat, replying, send, stop, updateSendButton } from "./chat.js";
import { fitInput } from "./composer.js";
import { historyLimits, loadConfig, onConfig } from "./config.js";
import { $ } from "./dom.js";
import { closeDrawer, drawerOpen, setupDrawer } from "./drawer.js";
import { onExample } from "./empty.js";
import { startLive } from "./live.js";
import { setCurrency } from "./money.js";
import { refreshPrompts, setupPrompts } from "./prompts.js";
import { onAnswer, refreshEmpty, renderAll } from "./render.js";
import { onReachable, refreshServers } from "./servers.js";
import { load } from "./state.js";
import { onTools } from "./tools.js";

const REFRESH_MS = 4000; // how often the servers panel (and a config that failed) is retried

onConfig((cfg, missing) => {
  $("model").textContent = cfg.llmConfigured ? `model: ${cfg.model}` : "";
  $("ask-approval").checked = cfg.toolApproval !== "auto";
  if (setCurrency(cfg.currency)) renderAll(); // prices drawn before the config came
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
onReachable(updateSendButton);
onTools(() => {
  refreshEmpty();
  refreshPrompts();
  refreshResources();
});
onExample((text) => send(text));

const inputEl = $("input");
$("composer").addEventListener("submit", (ev) => {
  ev.preventDefault();
  send(inputEl.value);
});
inputEl.addEventListener("input", fitInput);
addEventListener("resize", fitInput);
inputEl.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    send(inputEl.value);
  }
});
$("stop").addEventListener("click", stop);
$("new-chat").addEventListener("click", newChat);
document.addEventListener("keydown", (ev) => {
  if (ev.key !== "Escape" || ev.defaultPrevented) return;
  if (drawerOpen()) closeDrawer();
  else if (replying()) stop();
  else return;
  ev.preventDefault();
});

setupDrawer();
setupPrompts();
setupAttach();
load();
renderAll();
loadConfig();
refreshServers();
startLive();
setInterval(() => {
  refreshServers();
  if (historyLimits() === null) loadConfig();
}, REFRESH_MS);
