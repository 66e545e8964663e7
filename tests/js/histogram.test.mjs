import {test} from 'node:test';
import assert from 'node:assert/strict';

import {
  downsample, lastWriterSeries, normalizeSeries, rebin, stepsShownByLane, valueRange,
} from '../../frontend/histogram.js';
import {histogramAt, layoutHistogram, niceDomain, niceTicks, sharedDomain} from '../../frontend/chart.js';

/** A lane's served series: one histogram per step, centred on `centre`. */
function served(steps, centre) {
  return steps.map((step) => [1000 + step, step, [[centre - 1, centre, 2], [centre, centre + 1, 6]]]);
}

test('TensorBoard shows, per step, the value of the highest lane that has that step', () => {
  const lanes = [
    normalizeSeries(served([0, 1, 2, 3], 0), 0),
    normalizeSeries(served([0, 1, 2, 3], 10), 1),
    normalizeSeries(served([0, 1, 3], 20), 2),
  ];
  const shown = lastWriterSeries(lanes);
  assert.deepEqual(shown.map((e) => [e.step, e.lane]), [[0, 2], [1, 2], [2, 1], [3, 2]]);
  assert.deepEqual(shown[2].buckets, [[9, 10, 2], [10, 11, 6]]);
  assert.deepEqual([...stepsShownByLane(shown)], [[1, 1], [2, 3]]);
});

test('a clean tag shows as itself', () => {
  const only = normalizeSeries(served([0, 5], 1), 0);
  assert.deepEqual(lastWriterSeries([only]), only);
});

test('served series are sorted by step and non-finite edges cleaned', () => {
  const series = normalizeSeries([
    [2, 7, [[-1, 0, 1]]],
    [1, 3, [['-Infinity', -2, 4], [-2, 2, 5], [2, 'Infinity', 1], ['NaN', 'NaN', 9], [0, 1, 'NaN']]],
  ], 1);
  assert.deepEqual(series.map((e) => e.step), [3, 7]);
  assert.deepEqual(series[0].buckets, [[-2, -2, 4], [-2, 2, 5], [2, 2, 1]]);
  assert.equal(series[0].lane, 1);
  assert.deepEqual(valueRange(series), [-2, 2]);
  assert.deepEqual(valueRange([]), [0, 0]);
});

test('rebinning spreads counts by overlap and keeps the total', () => {
  const bins = rebin([[0, 1, 10], [1, 3, 20], [2.5, 2.5, 5]], 0, 4, 4);
  assert.deepEqual(bins.map((b) => b.x), [0, 1, 2, 3]);
  assert.deepEqual(bins.map((b) => b.dx), [1, 1, 1, 1]);
  assert.deepEqual(bins.map((b) => b.y), [10, 10, 15, 0]);
  const total = rebin([[-0.3, 0.7, 3], [0.7, 2.2, 7]], -0.3, 2.2, 30).reduce((s, b) => s + b.y, 0);
  assert.ok(Math.abs(total - 10) < 1e-9);
});

test('a constant tensor still gets bins around its value', () => {
  const bins = rebin([[0.5, 0.5, 3]], 0.5, 0.5, 10);
  assert.ok(bins[0].x < 0.5 && bins[9].x + bins[9].dx > 0.5);
  assert.equal(bins.reduce((s, b) => s + b.y, 0), 3);
});

test('downsampling keeps first and last, evenly spaced', () => {
  const steps = Array.from({length: 500}, (_, i) => i);
  const kept = downsample(steps, 5);
  assert.deepEqual(kept, [0, 125, 250, 374, 499]);
  assert.equal(downsample(steps.slice(0, 3), 5).length, 3);
});

const SIZE = {width: 440, height: 300, domain: null};

test('offset mode moves each later step down; overlay mode shares one baseline', () => {
  const series = normalizeSeries(served([0, 1, 2, 3, 4], 0), 0);
  const offset = layoutHistogram(series, {...SIZE, mode: 'offset', time: 'step'});
  const baselines = offset.ridges.map((r) => r.baseline);
  assert.deepEqual([...baselines].sort((a, b) => a - b), baselines);
  assert.ok(baselines[0] < baselines[4]);
  assert.equal(baselines[4], offset.plot.bottom);
  assert.deepEqual(offset.yTicks.map((t) => t.label), ['0', '1', '2', '3', '4']);
  assert.equal(offset.yTitle, 'step');
  assert.equal(offset.xTitle, 'value');
  assert.match(offset.ridges[0].path, /^M[\d.]+,[\d.]+(L[\d.]+,[\d.]+)+Z$/);

  const overlay = layoutHistogram(series, {...SIZE, mode: 'overlay', time: 'step'});
  assert.deepEqual(new Set(overlay.ridges.map((r) => r.baseline)), new Set([overlay.plot.bottom]));
  assert.equal(overlay.yTitle, 'count');
  assert.ok(overlay.ridges.every((r) => r.baseline <= SIZE.height));
  assert.deepEqual(layoutHistogram([], {...SIZE, mode: 'offset', time: 'step'}).ridges, []);
});

test('the time axis places ridges by step, by seconds since the first value, or by wall time', () => {
  // Steps 0, 1, 2 at wall times 100, 101, 190: by step evenly spaced, by time step 2 far below step 1.
  const series = [0, 1, 2].map((step, i) => ({step, wallTime: [100, 101, 190][i], lane: 0, buckets: [[0, 1, 4]]}));
  const byStep = layoutHistogram(series, {...SIZE, mode: 'offset', time: 'step'}).ridges.map((r) => r.baseline);
  const relative = layoutHistogram(series, {...SIZE, mode: 'offset', time: 'relative'});
  const byTime = relative.ridges.map((r) => r.baseline);
  assert.ok(Math.abs((byStep[1] - byStep[0]) - (byStep[2] - byStep[1])) < 1e-9);
  assert.ok(byTime[2] - byTime[1] > 50 * (byTime[1] - byTime[0]));
  assert.equal(relative.yTitle, 'relative time');
  assert.ok(relative.yTicks.every((t) => /s$|m/.test(t.label)));
  assert.equal(layoutHistogram(series, {...SIZE, mode: 'offset', time: 'wall'}).yTitle, 'wall time');
});

test('lanes drawn on a shared domain line up value for value', () => {
  const narrow = [{step: 0, wallTime: 0, lane: 0, buckets: [[-0.1, 0.1, 5]]}];
  const wide = [{step: 0, wallTime: 0, lane: 1, buckets: [[-2, 2, 5]]}];
  const domain = sharedDomain([narrow, wide]);
  assert.deepEqual(domain, [-2, 2]);
  const a = layoutHistogram(narrow, {...SIZE, mode: 'offset', time: 'step', domain});
  const b = layoutHistogram(wide, {...SIZE, mode: 'offset', time: 'step', domain});
  assert.deepEqual(a.xTicks, b.xTicks);
  const own = layoutHistogram(narrow, {...SIZE, mode: 'offset', time: 'step'});
  assert.notDeepEqual(own.xTicks, a.xTicks);
  assert.equal(sharedDomain([[], []]), null);
});

test('the pointer finds the step of the nearest ridge and the drawn bin under it', () => {
  const series = normalizeSeries(served([0, 1, 2, 3, 4], 0), 0);
  const layout = layoutHistogram(series, {...SIZE, mode: 'offset', time: 'step'});
  const last = layout.ridges[4];
  const hit = histogramAt(layout, (layout.plot.left + layout.plot.right) / 2, last.baseline - 1);
  assert.equal(hit.ridge.step, 4);
  assert.ok(hit.bin.x <= hit.value && hit.value <= hit.bin.x + hit.bin.dx);
  assert.ok(hit.ridge.bins.includes(hit.bin));
  assert.ok(hit.bin.y > 0);
  assert.equal(histogramAt(layout, layout.plot.right + 20, last.baseline), null);
});

test('axis ticks land on 1, 2, 5 multiples', () => {
  assert.deepEqual(niceTicks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceTicks(-3, 7, 5), [-2, 0, 2, 4, 6]);
  assert.deepEqual(niceTicks(4, 4, 5), [4]);
  assert.deepEqual(niceDomain(-0.93, 1.07), [-1, 1.2]);
});
