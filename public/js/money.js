/* Money as currency: every price, line total and revenue on the page goes through money(),
 * an Intl.NumberFormat for the CURRENCY web.py names in GET /api/config (USD until it says
 * otherwise, or when it names a code the browser does not know). The API's JSON keeps the
 * seed's plain numbers; only what people read is formatted. */

import { plain } from "./dom.js";

const DEFAULT = "USD";
let code = DEFAULT;
let format = make(DEFAULT);

function make(currency) {
  return new Intl.NumberFormat(undefined, { style: "currency", currency });
}

/* Uses `currency` (an ISO 4217 code) from now on; true when that changed anything. */
export function setCurrency(currency) {
  const wanted = typeof currency === "string" && currency.trim() ? currency.trim() : DEFAULT;
  if (wanted.toUpperCase() === code) return false;
  try {
    format = make(wanted);
    code = wanted.toUpperCase();
  } catch (e) {
    if (code === DEFAULT) return false;
    format = make(DEFAULT);
    code = DEFAULT;
  }
  return true;
}

export const currency = () => code;

/* "$1,299.00" for 1299; anything that is not a finite number as it is. */
export function money(value) {
  const n = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
  return typeof n === "number" && Number.isFinite(n) ? format.format(n) : plain(value ?? "");
}
