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
