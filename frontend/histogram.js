// Histogram series math: cleaning served data, what TensorBoard keeps of a colliding tag, rebinning, downsampling.

/**
 * One step of a histogram series. `buckets` are [left, right, count]; `lane` is the writer it came from.
 * @typedef {{wallTime: number, step: number, buckets: !Array<!Array<number>>, lane: number}} HistogramStep
 * @typedef {{x: number, dx: number, y: number}} Bin
 */

/**
 * Turns the /histograms answer into a clean series sorted by step. TensorBoard's JSON encoder
 * writes non-finite numbers as the strings "Infinity", "-Infinity" and "NaN"; an infinite edge is
 * pulled onto the bucket's finite edge so the bucket keeps its count, and buckets with no finite
 * edge or no finite count are dropped.
 * @param {!Array<!Array<*>>} raw [[wall_time, step, [[left, right, count], ...]], ...]
 * @param {number} lane
 * @return {!Array<HistogramStep>}
 */
export function normalizeSeries(raw, lane) {
  const series = raw.map(([wallTime, step, buckets]) => ({
    wallTime: Number(wallTime),
    step: Number(step),
    buckets: buckets.map(normalizeBucket).filter((bucket) => bucket !== null),
    lane,
  }));
  return series.sort((a, b) => a.step - b.step);
}

/**
 * @param {!Array<*>} bucket
 * @return {?Array<number>}
 */
function normalizeBucket(bucket) {
  let left = Number(bucket[0]);
  let right = Number(bucket[1]);
  const count = Number(bucket[2]);
  if (!Number.isFinite(count) || (!Number.isFinite(left) && !Number.isFinite(right))) {
    return null;
  }
  if (!Number.isFinite(left)) {
    left = right;
  }
  if (!Number.isFinite(right)) {
    right = left;
  }
  return [left, right, count];
}

/**
 * What TensorBoard's own Histograms tab shows for a tag several writers share: at each step it
 * keeps only the last value written, i.e. the value of the highest lane that has that step.
 * @param {!Array<!Array<HistogramStep>>} lanes series of lane 0, 1, ... in lane order
 * @return {!Array<HistogramStep>}
 */
export function lastWriterSeries(lanes) {
  /** @type {!Map<number, HistogramStep>} */
  const byStep = new Map();
  for (const series of lanes) {
    for (const entry of series) {
      const kept = byStep.get(entry.step);
      if (!kept || entry.lane >= kept.lane) {
        byStep.set(entry.step, entry);
      }
    }
  }
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}

/**
 * For each lane, at how many steps its value is the one TensorBoard shows.
 * @param {!Array<HistogramStep>} shown output of lastWriterSeries
 * @return {!Map<number, number>} lane -> steps won, in lane order
 */
export function stepsShownByLane(shown) {
  const counts = new Map();
  for (const entry of shown) {
    counts.set(entry.lane, (counts.get(entry.lane) || 0) + 1);
  }
  return new Map([...counts.entries()].sort((a, b) => a[0] - b[0]));
}

/**
 * Smallest left edge and largest right edge over every step; [0, 0] for an empty series.
 * @param {!Array<HistogramStep>} series
 * @return {!Array<number>} [min, max]
 */
export function valueRange(series) {
  let min = Infinity;
  let max = -Infinity;
  for (const entry of series) {
    for (const [left, right] of entry.buckets) {
      min = Math.min(min, left);
      max = Math.max(max, right);
    }
  }
  return min <= max ? [min, max] : [0, 0];
}

/**
 * Spreads buckets of any widths over `binCount` equal bins between min and max, each bucket
 * giving a bin the share of its count that overlaps it; the same rescaling TensorBoard's
 * histogram dashboard does before drawing, so histograms with different bucketing line up.
 * A zero-width bucket (a constant tensor) puts its whole count in the bin holding its value.
 * @param {!Array<!Array<number>>} buckets [[left, right, count], ...]
 * @param {number} min
 * @param {number} max
 * @param {number=} binCount
 * @return {!Array<Bin>}
 */
export function rebin(buckets, min, max, binCount = 30) {
  if (max <= min) {
    const pad = Math.abs(min) * 0.1 || 1;
    min -= pad;
    max += pad;
  }
  const width = (max - min) / binCount;
  const counts = new Array(binCount).fill(0);
  const binOf = (value) => Math.min(binCount - 1, Math.max(0, Math.floor((value - min) / width)));
  for (const [left, right, count] of buckets) {
    if (right <= left) {
      counts[binOf(left)] += count;
      continue;
    }
    for (let bin = binOf(left); bin <= binOf(right); bin++) {
      const binLeft = min + bin * width;
      const overlap = Math.min(right, binLeft + width) - Math.max(left, binLeft);
      if (overlap > 0) {
        counts[bin] += (count * overlap) / (right - left);
      }
    }
  }
  return counts.map((y, bin) => ({x: min + bin * width, dx: width, y}));
}

/**
 * Keeps at most `limit` steps, evenly spaced, always the first and the last.
 * @template T
 * @param {!Array<T>} series
 * @param {number} limit at least 2
 * @return {!Array<T>}
 */
export function downsample(series, limit) {
  if (series.length <= limit) {
    return series;
  }
  const kept = [];
  const stride = (series.length - 1) / (limit - 1);
  for (let i = 0; i < limit; i++) {
    kept.push(series[Math.round(i * stride)]);
  }
  return kept;
}
