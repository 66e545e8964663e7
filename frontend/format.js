// Text formatting shared by the VarScope views: counts, values, lanes, step ranges.

/**
 * "1 run", "3 runs".
 * @param {number} count
 * @param {string} singular
 * @param {string=} pluralForm
 * @return {string}
 */
export function plural(count, singular, pluralForm = `${singular}s`) {
  return `${count} ${count === 1 ? singular : pluralForm}`;
}

/**
 * A number with three significant digits, the precision TensorBoard's histogram axes use.
 * @param {number} value
 * @return {string}
 */
export function formatValue(value) {
  if (!Number.isFinite(value)) {
    return String(value);
  }
  if (value === 0) {
    return '0';
  }
  const magnitude = Math.abs(value);
  if (magnitude >= 1e5 || magnitude < 1e-3) {
    return value.toExponential(2).replace(/\.?0+e/, 'e');
  }
  // Number() drops the trailing zeros toPrecision keeps ("0.500" -> 0.5).
  return String(Number(value.toPrecision(3)));
}

/**
 * Attribution confidence in [0, 1] as a whole percentage.
 * @param {number} confidence
 * @return {string}
 */
export function formatPercent(confidence) {
  return `${Math.round(confidence * 100)}%`;
}

/**
 * "step 5" or "steps 0..9".
 * @param {number} first
 * @param {number} last
 * @return {string}
 */
export function stepRange(first, last) {
  return first === last ? `step ${first}` : `steps ${first}..${last}`;
}

/**
 * One lane of a collision as the user reads it: "lane 0 → sequential/my_layer/my_variable1 (98%)",
 * or "lane 0 → unattributed" when no variable could be named.
 * @param {{lane: number, variable: ?string, confidence: number}} lane
 * @return {string}
 */
export function laneText(lane) {
  if (lane.variable === null || lane.variable === undefined) {
    return `lane ${lane.lane} → unattributed`;
  }
  return `lane ${lane.lane} → ${lane.variable} (${formatPercent(lane.confidence)})`;
}

/**
 * A shape as TensorFlow prints it: "(5, 3)"; "" when unknown.
 * @param {?Array<number>} shape
 * @return {string}
 */
export function formatShape(shape) {
  if (!Array.isArray(shape)) {
    return '';
  }
  return shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
}

/**
 * Last path component of a file name written with either separator.
 * @param {string} path
 * @return {string}
 */
export function baseName(path) {
  const parts = path.split(/[\\/]/);
  return parts[parts.length - 1] || path;
}

// What Python's str.isprintable() refuses, which the CLI escapes: controls (bidirectional overrides among them),
// unassigned, private-use and surrogate code points, line and paragraph separators, and spaces other than ' '.
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}]|(?! )\p{Zs}/gu;
const NAMED_ESCAPES = {'\t': '\\t', '\n': '\\n', '\r': '\\r'};

/**
 * Text from files on disk made safe to read: every character the CLI escapes is shown as the CLI shows it
 * (Python's unicode_escape: `\u202e`, `\x07`, `\t`), so a tag `\u202egnp.exe\u202c/kernel` cannot display
 * as `exe.png/kernel`.
 * @param {string} text
 * @return {string}
 */
export function visible(text) {
  return String(text).replace(UNPRINTABLE, (char) => {
    if (NAMED_ESCAPES[char]) {
      return NAMED_ESCAPES[char];
    }
    const code = char.codePointAt(0);
    if (code < 0x100) {
      return `\\x${code.toString(16).padStart(2, '0')}`;
    }
    return code < 0x10000 ? `\\u${code.toString(16).padStart(4, '0')}` : `\\U${code.toString(16).padStart(8, '0')}`;
  });
}

/**
 * A duration in seconds as TensorBoard's relative time axis reads: "45s", "12m 5s", "3h 20m".
 * @param {number} seconds
 * @return {string}
 */
export function formatDuration(seconds) {
  const s = Math.max(0, seconds);
  if (s < 60) {
    return `${Number(s.toPrecision(3))}s`;
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)}m ${Math.round(s % 60)}s`;
  }
  return `${Math.floor(s / 3600)}h ${Math.round((s % 3600) / 60)}m`;
}

/**
 * A wall time (seconds since the epoch) as a local date and time.
 * @param {number} seconds
 * @return {string}
 */
export function formatWallTime(seconds) {
  return new Date(seconds * 1000).toLocaleString();
}

/**
 * The report's lane evidence as the tab shows it: the report names the CLI's `--checkpoint`, and in TensorBoard the
 * same setting is the flag `--varscope_checkpoint`.
 * @param {string} evidence
 * @return {string}
 */
export function tabEvidence(evidence) {
  return evidence.replace(/--checkpoint\b/g, '--varscope_checkpoint');
}
