// The tab's view in TensorBoard's URL: keys `p.varscope.<name>` in the top page's hash, the place and spelling
// TensorBoard's plugin API gives plugin state (experimental.GetURLPluginData hands a plugin its `p.<plugin>.`
// keys), so reload, back/forward and a shared link restore the view.

/**
 * @typedef {{run: ?string, tag: ?string, lane: ?number, view: string, mode: string, time: string,
 *            range: string, filter: string, runFilter: string, hiddenRuns: !Array<string>,
 *            colliding: ?boolean}} ViewState
 *   colliding: the tree's "colliding only" switch; null until the user sets it (then it follows the report).
 */

const PREFIX = 'p.varscope.';
// TensorBoard's tf_storage keeps the active tab under this key: the one hash component with no `=`.
const TAB = '__tab__';

/** @type {ViewState} */
export const DEFAULT_STATE = Object.freeze({
  run: null, tag: null, lane: null, view: 'histograms', mode: 'offset', time: 'step', range: 'shared',
  filter: '', runFilter: '', hiddenRuns: [], colliding: null,
});

const CHOICES = {
  view: ['histograms', 'distributions'],
  mode: ['offset', 'overlay'],
  time: ['step', 'relative', 'wall'],
  range: ['shared', 'lane'],
};

/**
 * Parses a hash the way TensorBoard's tf_storage does: `#tab&key=value&...`, keys and values URI-encoded.
 * @param {string} hash with or without the leading '#'
 * @return {!Object<string, string>}
 */
export function parseHash(hash) {
  /** @type {!Object<string, string>} */
  const dict = {};
  const text = hash.startsWith('#') ? hash.slice(1) : hash;
  for (const part of text.split('&')) {
    const pieces = part.split('=');
    try {
      if (pieces.length === 1 && pieces[0] !== '') {
        dict[TAB] = pieces[0];
      } else if (pieces.length === 2) {
        dict[decodeURIComponent(pieces[0])] = decodeURIComponent(pieces[1]);
      }
    } catch {
      // A malformed escape in someone else's key: leave that component out, as TensorBoard would fail to read it.
    }
  }
  return dict;
}

/**
 * Writes a hash the way TensorBoard's tf_storage does, so its own reading of the hash keeps working.
 * @param {!Object<string, string>} dict
 * @return {string} without the leading '#'
 */
export function formatHash(dict) {
  const rest = Object.keys(dict).filter((key) => key !== TAB)
    .map((key) => `${encodeURIComponent(key)}=${encodeURIComponent(dict[key])}`);
  const tab = dict[TAB] === undefined ? '' : dict[TAB];
  return rest.length > 0 ? `${tab}&${rest.join('&')}` : tab;
}

/**
 * The tab's view from a parsed hash; anything missing or malformed falls back to the default.
 * @param {!Object<string, string>} dict
 * @return {ViewState}
 */
export function readState(dict) {
  const get = (name) => dict[PREFIX + name];
  const choice = (name) => (CHOICES[name].includes(get(name)) ? get(name) : DEFAULT_STATE[name]);
  const lane = get('lane');
  let hiddenRuns = [];
  try {
    const parsed = JSON.parse(get('hide') || '[]');
    hiddenRuns = Array.isArray(parsed) ? parsed.filter((run) => typeof run === 'string') : [];
  } catch {
    hiddenRuns = [];
  }
  const tag = get('tag');
  return {
    run: tag !== undefined && get('run') !== undefined ? get('run') : null,
    tag: tag !== undefined && get('run') !== undefined ? tag : null,
    lane: lane !== undefined && /^[0-9]{1,6}$/.test(lane) ? Number(lane) : null,
    view: choice('view'),
    mode: choice('mode'),
    time: choice('time'),
    range: choice('range'),
    filter: get('filter') || '',
    runFilter: get('runs') || '',
    hiddenRuns,
    colliding: get('colliding') === '1' ? true : get('colliding') === '0' ? false : null,
  };
}

/**
 * `dict` with the tab's keys replaced by `state`'s; keys at their default are left out, other tabs' kept.
 * @param {!Object<string, string>} dict
 * @param {ViewState} state
 * @return {!Object<string, string>}
 */
export function writeState(dict, state) {
  const out = Object.fromEntries(Object.entries(dict).filter(([key]) => !key.startsWith(PREFIX)));
  const set = (name, value) => {
    out[PREFIX + name] = value;
  };
  if (state.run !== null && state.tag !== null) {
    set('run', state.run);
    set('tag', state.tag);
    if (state.lane !== null) {
      set('lane', String(state.lane));
    }
  }
  for (const name of Object.keys(CHOICES)) {
    if (state[name] !== DEFAULT_STATE[name]) {
      set(name, state[name]);
    }
  }
  if (state.filter !== '') {
    set('filter', state.filter);
  }
  if (state.runFilter !== '') {
    set('runs', state.runFilter);
  }
  if (state.hiddenRuns.length > 0) {
    set('hide', JSON.stringify(state.hiddenRuns));
  }
  if (state.colliding !== null) {
    set('colliding', state.colliding ? '1' : '0');
  }
  return out;
}

/**
 * Where the state lives: TensorBoard's page when the tab is in its (same-origin) iframe, else the tab's own
 * location.
 * @param {!Window} win
 * @return {!Window}
 */
export function hashWindow(win) {
  try {
    if (win.parent !== win && win.parent.location.href) {
      return win.parent;
    }
  } catch {
    // Embedded by another origin: keep the state in the iframe's own hash.
  }
  return win;
}

/**
 * Puts `state` into the hash of `target`: a new history entry when the view changes (so back returns to the
 * previous view), a replaced one while typing in a filter.
 * @param {!Window} target
 * @param {ViewState} state
 * @param {boolean} push
 * @return {boolean} whether the hash changed
 */
export function saveState(target, state, push) {
  const next = formatHash(writeState(parseHash(target.location.hash), state));
  if (next === target.location.hash.replace(/^#/, '')) {
    return false;
  }
  if (push) {
    target.location.hash = next; // fires hashchange, which TensorBoard's tf_storage listens to
  } else {
    const url = new URL(target.location.href);
    url.hash = next;
    target.history.replaceState(target.history.state, '', url.href);
  }
  return true;
}
