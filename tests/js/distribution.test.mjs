import {test} from 'node:test';
import assert from 'node:assert/strict';

import {NORMAL_HISTOGRAM_BPS, compressHistogram, compressSeries} from '../../frontend/distribution.js';

// Inputs and what tensorboard.plugins.distribution.compressor.compress_histogram returns for them
// (TensorBoard 2.21), printed with json.dumps.
const CASES = [
  [[[-1.0, 0.0, 2.0], [0.0, 1.0, 6.0], [1.0, 2.0, 2.0]],
    [-1.0, -0.6659999999999999, -0.20650000000000002, 0.18083333333333335, 0.5, 0.8191666666666667, 1.2065,
      1.666, 2.0]],
  [[[0.0, 0.5, 0.0], [0.5, 1.0, 3.0], [1.0, 3.0, 0.0], [3.0, 4.0, 1.0]],
    [0.0, 0.08906666666666667, 0.2116, 0.41133333333333333, 0.6666666666666666, 0.922, 3.3652, 3.7328, 4.0]],
  [[[2.0, 2.0, 5.0]], [2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]],
  [[[-3.0, -1.0, 1.0], [-1.0, 0.0, 0.0], [0.0, 0.25, 10.0], [0.25, 9.0, 1.0]],
    [-3.0, -1.3968, 0.022609999999999998, 0.06754999999999999, 0.125, 0.18245, 0.22738999999999998,
      1.985999999999986, 8.99999999999998]],
  [[], [0, 0, 0, 0, 0, 0, 0, 0, 0]],
];

test('percentiles equal TensorBoard compress_histogram on the same buckets', () => {
  for (const [buckets, expected] of CASES) {
    const got = compressHistogram(buckets);
    assert.equal(got.length, NORMAL_HISTOGRAM_BPS.length);
    got.forEach((value, i) => assert.ok(Math.abs(value - expected[i]) < 1e-9,
      `bp ${NORMAL_HISTOGRAM_BPS[i]} of ${JSON.stringify(buckets)}: ${value} != ${expected[i]}`));
  }
});

test('percentiles never decrease and stay within the data', () => {
  const buckets = [[-2, -1, 3], [-1, 0, 40], [0, 1, 50], [1, 4, 7]];
  const values = compressHistogram(buckets);
  values.slice(1).forEach((value, i) => assert.ok(value >= values[i]));
  assert.equal(values[0], -2);
  assert.equal(values[values.length - 1], 4);
});

test('a series is compressed step by step, keeping step, wall time and lane', () => {
  const series = [{wallTime: 10, step: 3, lane: 1, buckets: [[0, 1, 1]]}];
  const [entry] = compressSeries(series);
  assert.deepEqual({step: entry.step, wallTime: entry.wallTime, lane: entry.lane}, {step: 3, wallTime: 10, lane: 1});
  assert.equal(entry.values[4], 0.5);
});
