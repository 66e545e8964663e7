// Percentile bands over steps, computed from histograms as TensorBoard's Distributions tab computes them
// (tensorboard/plugins/distribution/compressor.py, compress_histogram).

/**
 * @typedef {import('./histogram.js').HistogramStep} HistogramStep
 * @typedef {{wallTime: number, step: number, lane: number, values: !Array<number>}} CompressedStep
 *   `values[i]` is the value at basis point NORMAL_HISTOGRAM_BPS[i].
 */

/**
 * Basis points (1/100 of a percent) of the normal CDF at -inf, -1.5, -1, -0.5, 0, 0.5, 1, 1.5 and +inf standard
 * deviations: bands of 1, 2 and 3 standard deviations around the median and the tails, as TensorBoard draws.
 * @type {!Array<number>}
 */
export const NORMAL_HISTOGRAM_BPS = [0, 668, 1587, 3085, 5000, 6915, 8413, 9332, 10000];

/**
 * The value at each basis point of a histogram, interpolated linearly within the bucket the cumulative weight
 * crosses it in; TensorBoard's compress_histogram step for step (searchsorted side="right", skipped empty
 * buckets, the first bucket's left edge as the lower bound, the last right edge for what remains).
 * @param {!Array<!Array<number>>} buckets [[left, right, count], ...] in order
 * @param {!Array<number>=} bps
 * @return {!Array<number>} one value per basis point
 */
export function compressHistogram(buckets, bps = NORMAL_HISTOGRAM_BPS) {
  if (buckets.length === 0) {
    return bps.map(() => 0);
  }
  const minmin = buckets[0][0];
  const maxmax = buckets[buckets.length - 1][1];
  const total = buckets.reduce((sum, bucket) => sum + bucket[2], 0) || 1;
  const last = bps[bps.length - 1];
  const weights = [];
  let running = 0;
  for (const bucket of buckets) {
    running += (bucket[2] * last) / total;
    weights.push(running);
  }
  const result = [];
  let bpIndex = 0;
  outer: while (bpIndex < bps.length) {
    let i = searchRight(weights, bps[bpIndex]);
    while (i < weights.length) {
      const cumsum = weights[i];
      const cumsumPrev = i > 0 ? weights[i - 1] : 0;
      if (cumsum === cumsumPrev) {
        i += 1;
        continue;
      }
      const lhs = !i || !cumsumPrev ? minmin : Math.max(buckets[i - 1][1], minmin);
      const rhs = Math.min(buckets[i][1], maxmax);
      result.push(lhs + ((bps[bpIndex] - cumsumPrev) * (rhs - lhs)) / (cumsum - cumsumPrev));
      bpIndex += 1;
      continue outer;
    }
    break;
  }
  while (bpIndex < bps.length) {
    result.push(maxmax);
    bpIndex += 1;
  }
  return result;
}

/**
 * numpy.searchsorted(sorted, value, side="right"): the first index whose element is greater than `value`.
 * @param {!Array<number>} sorted
 * @param {number} value
 * @return {number}
 */
function searchRight(sorted, value) {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    if (sorted[mid] <= value) {
      low = mid + 1;
    } else {
      high = mid;
    }
  }
  return low;
}

/**
 * A lane's series compressed step by step.
 * @param {!Array<HistogramStep>} series
 * @return {!Array<CompressedStep>}
 */
export function compressSeries(series) {
  return series.map((entry) => ({
    wallTime: entry.wallTime,
    step: entry.step,
    lane: entry.lane,
    values: compressHistogram(entry.buckets),
  }));
}
