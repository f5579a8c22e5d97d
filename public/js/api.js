/* The page's requests to web.py, in one place: JSON GETs that throw on an HTTP error, and JSON
 * POSTs whose callers read the status and body themselves. */

export async function getJSON(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.json();
}

export function postJSON(url, body, signal) {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
}
