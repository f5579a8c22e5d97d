/* Which part of the conversation to send: the most recent whole turns that fit the server's
 * history limits, so a long chat or one huge reply never makes every later send fail. */

/* Turns: a user message and everything that answered it (assistant tool calls, their tool
 * messages, the reply). Dropping whole turns never separates a tool call from its results. */
function splitTurns(history) {
  const turns = [];
  for (const m of history) {
    if (!turns.length || (m && m.role === "user")) turns.push([]);
    turns[turns.length - 1].push(m);
  }
  return turns;
}

const len = (v) => (typeof v === "string" ? v.length : 0);

function messageFits(m, limits) {
  if (!m || typeof m !== "object") return false;
  if (len(m.content) > limits.maxContentChars || len(m.tool_call_id) > limits.maxIdChars) {
    return false;
  }
  const calls = m.tool_calls || [];
  if (!Array.isArray(calls) || calls.length > limits.maxToolCalls) return false;
  return calls.every(
    (c) =>
      c &&
      c.function &&
      len(c.id) <= limits.maxIdChars &&
      len(c.function.name) <= limits.maxNameChars &&
      len(c.function.arguments) <= limits.maxArgumentsChars
  );
}

function textSize(m) {
  let n = len(m.content) + len(m.tool_call_id);
  for (const c of m.tool_calls || []) {
    n += len(c.id) + len(c.function.name) + len(c.function.arguments);
  }
  return n;
}

const utf8 = new TextEncoder();
const jsonBytes = (v) => utf8.encode(JSON.stringify(v)).length;

/* Room left in the request body for the JSON around the history (the page's own margin). */
const BODY_SLACK_BYTES = 1024;

/* The most recent whole turns of `history` that fit `limits` (GET /api/config historyLimits)
 * next to `request` (the rest of the body), oldest dropped first. JS string lengths count
 * UTF-16 units, never fewer than Python's characters, so this errs on the safe side. */
export function recentHistory(history, request, limits) {
  let bytes = limits.maxBodyBytes - jsonBytes(request) - BODY_SLACK_BYTES;
  let messages = limits.maxMessages;
  let chars = limits.maxChars;
  const kept = [];
  const turns = splitTurns(history);
  for (let i = turns.length - 1; i >= 0; i--) {
    const turn = turns[i];
    if (turn[0]?.role !== "user" || !turn.every((m) => messageFits(m, limits))) break;
    const size = jsonBytes(turn);
    const text = turn.reduce((n, m) => n + textSize(m), 0);
    if (turn.length > messages || text > chars || size > bytes) break;
    messages -= turn.length;
    chars -= text;
    bytes -= size;
    kept.unshift(turn);
  }
  return kept.flat();
}
