// Fetches the report and histogram series from the plugin's routes beside this module.

/**
 * @typedef {import('./overview.js').Report} Report
 */

// TensorBoard serves this module at <prefix>/data/plugin/varscope/model.js; the routes are its siblings.
const MODULE_URL = import.meta.url;

/** A route answered with an error status; the message carries the status and the server's text. */
export class HttpError extends Error {
  /**
   * @param {number} status
   * @param {string} statusText
   * @param {string} body plain-text message from the server
   */
  constructor(status, statusText, body) {
    const reason = body.trim() || statusText;
    super(`HTTP ${status}${reason ? `: ${reason}` : ''}`);
    this.name = 'HttpError';
    this.status = status;
  }
}

/**
 * URL of the report route.
 * @param {string=} base URL the route is resolved against (this module's URL by default)
 * @return {string}
 */
export function reportUrl(base = MODULE_URL) {
  return new URL('report', base).href;
}

/**
 * URL of one lane's histogram series. Run and tag names come from files on disk and may hold
 * any character (`&`, `#`, `%`, markup, unicode), so they go through URLSearchParams.
 * @param {string} run
 * @param {string} tag
 * @param {number} lane
 * @param {string=} base URL the route is resolved against (this module's URL by default)
 * @return {string}
 */
export function histogramsUrl(run, tag, lane, base = MODULE_URL) {
  const url = new URL('histograms', base);
  url.search = new URLSearchParams({run, tag, lane: String(lane)}).toString();
  return url.href;
}

/**
 * The report as served: its text, which a refresh compares with the last one before parsing anything, and the
 * document.
 * @param {AbortSignal=} signal
 * @return {!Promise<{text: string, report: Report}>}
 */
export async function fetchReport(signal) {
  const response = await request(reportUrl(), signal);
  const text = await response.text();
  return {text, report: JSON.parse(text)};
}

/**
 * One lane of a tag: [[wall_time, step, [[left, right, count], ...]], ...], one entry per step.
 * @param {string} run
 * @param {string} tag
 * @param {number} lane
 * @param {AbortSignal=} signal
 * @return {!Promise<!Array<!Array<*>>>}
 */
export async function fetchHistograms(run, tag, lane, signal) {
  return fetchJson(histogramsUrl(run, tag, lane), signal);
}

/**
 * @param {string} url
 * @param {AbortSignal=} signal
 * @return {!Promise<*>}
 */
async function fetchJson(url, signal) {
  return (await request(url, signal)).json();
}

/**
 * A successful response, or an error that says what failed.
 * @param {string} url
 * @param {AbortSignal=} signal
 * @return {!Promise<!Response>}
 */
async function request(url, signal) {
  let response;
  try {
    response = await fetch(url, {signal, headers: {Accept: 'application/json'}});
  } catch (error) {
    if (error instanceof Error && error.name === 'AbortError') {
      throw error;
    }
    throw new Error(`Could not reach TensorBoard: ${error instanceof Error ? error.message : error}`);
  }
  if (!response.ok) {
    throw new HttpError(response.status, response.statusText, await response.text());
  }
  return response;
}
