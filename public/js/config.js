/* GET /api/config. The server owns every limit the page applies to what it sends
 * (historyLimits); the page keeps no copy of them, so no chat is sent until this has loaded. */

import { getJSON } from "./api.js";

/* The history limits the page reads (chat.py defines their values). */
const LIMIT_NAMES = [
  "maxBodyBytes",
  "maxMessageChars",
  "maxMessages",
  "maxChars",
  "maxContentChars",
  "maxToolCalls",
  "maxArgumentsChars",
  "maxNameChars",
  "maxIdChars",
];

let limits = null;
let loading = null;
const listeners = [];

/* The server's history limits, or null until a config with all of them has loaded. */
export const historyLimits = () => limits;

/* fn(config, missing): after each load; `missing` names the limits the server did not send. */
export function onConfig(fn) {
  listeners.push(fn);
}

/* Loads the config (one request at a time); resolves to historyLimits(), or null when web.py
 * did not answer or sent incomplete limits. */
export function loadConfig() {
  loading ??= getJSON("/api/config")
    .then(
      (cfg) => {
        const got = cfg.historyLimits || {};
        const missing = LIMIT_NAMES.filter((name) => !Number.isFinite(got[name]));
        limits = missing.length ? null : Object.freeze({ ...got });
        for (const fn of listeners) fn(cfg, missing);
        return limits;
      },
      () => limits // unreachable: the servers panel says so; keep any limits already loaded
    )
    .finally(() => {
      loading = null;
    });
  return loading;
}
