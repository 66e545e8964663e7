// Geometry of the charts, drawn the way TensorBoard draws them: histogram ridges offset by step or time (or
// overlaid), and distributions as percentile bands over steps; plus what lies under the pointer.

import {rebin, valueRange, downsample} from './histogram.js';
import {formatDuration, formatValue} from './format.js';

/**
 * @typedef {import('./histogram.js').HistogramStep} HistogramStep
 * @typedef {import('./histogram.js').Bin} Bin
 * @typedef {import('./distribution.js').CompressedStep} CompressedStep
 * @typedef {{at: number, label: string}} Tick
 * @typedef {{left: number, top: number, right: number, bottom: number}} Plot
 * @typedef {{entry: HistogramStep, step: number, lane: number, path: string, baseline: number,
 *            shade: number, bins: !Array<Bin>}} Ridge
 * @typedef {{kind: string, width: number, height: number, plot: Plot, xTicks: !Array<Tick>, yTicks: !Array<Tick>,
 *            xTitle: string, yTitle: string, mode: string, time: string, ridges: !Array<Ridge>,
 *            xDomain: !Array<number>, maxCount: number, sliceHeight: number}} HistogramLayout
 * @typedef {{kind: string, width: number, height: number, plot: Plot, xTicks: !Array<Tick>, yTicks: !Array<Tick>,
 *            xTitle: string, yTitle: string, time: string, bands: !Array<{path: string, band: number}>,
 *            median: string, points: !Array<{x: number, entry: CompressedStep}>,
 *            yDomain: !Array<number>}} DistributionLayout
 * @typedef {{mode: string, time: string, width: number, height: number, domain: ?Array<number>}} ChartOptions
 *   mode 'offset' | 'overlay'; time 'step' | 'relative' | 'wall'; domain: the value range to draw (shared by
 *   the lanes of a tag), null for the series' own.
 */

/** @type {number} TensorBoard keeps up to 500 histograms per tag; a ridge plot stays readable with fewer. */
export const MAX_RIDGES = 100;
const BIN_COUNT = 30;
/** Hues of lanes 0, 1, 2, ...: distinct at a glance, orange first like TensorBoard's first run. */
const LANE_HUES = [24, 207, 140, 280, 340, 180, 50, 0];
// Room for tick labels at TensorBoard's 11 px and an axis title under or beside them.
const HISTOGRAM_MARGIN = {top: 14, right: 70, bottom: 42, left: 14};
const DISTRIBUTION_MARGIN = {top: 14, right: 16, bottom: 42, left: 56};
/** Titles of the time axis, as TensorBoard's Histograms tab names its choices. */
export const TIME_TITLES = {step: 'step', relative: 'relative time', wall: 'wall time'};

/**
 * Where an entry sits on the time axis: its step, seconds since the series' first value, or its wall time.
 * @param {{step: number, wallTime: number}} entry
 * @param {string} time
 * @param {number} firstWallTime
 * @return {number}
 */
export function timeOf(entry, time, firstWallTime) {
  if (time === 'relative') {
    return entry.wallTime - firstWallTime;
  }
  return time === 'wall' ? entry.wallTime : entry.step;
}

/**
 * Tick labels of the time axis.
 * @param {number} value
 * @param {string} time
 * @return {string}
 */
function timeLabel(value, time) {
  if (time === 'relative') {
    return formatDuration(value);
  }
  if (time === 'wall') {
    return new Date(value * 1000).toLocaleTimeString([], {hour: '2-digit', minute: '2-digit', second: '2-digit'});
  }
  return String(value);
}

/**
 * Ticks of the time axis: whole steps only; "nice" seconds for times.
 * @param {number} min
 * @param {number} max
 * @param {string} time
 * @param {number} count
 * @return {!Array<number>}
 */
function timeTicks(min, max, time, count) {
  const ticks = niceTicks(min, max, count);
  return time === 'step' ? ticks.filter((value) => Number.isInteger(value)) : ticks;
}

/**
 * The value range every lane of a tag is drawn on: smallest left and largest right edge over all series.
 * @param {!Array<!Array<HistogramStep>>} lanes
 * @return {?Array<number>} null when no series has a bucket
 */
export function sharedDomain(lanes) {
  const ranges = lanes.filter((series) => series.some((entry) => entry.buckets.length > 0)).map(valueRange);
  if (ranges.length === 0) {
    return null;
  }
  return [Math.min(...ranges.map((r) => r[0])), Math.max(...ranges.map((r) => r[1]))];
}

/**
 * Lays out a histogram chart. In offset mode each step is a filled ridge whose baseline moves down with the
 * time axis (earliest at the back, top), that axis on the right. In overlay mode every step's outline shares one
 * baseline and the right axis counts values, as in TensorBoard.
 * @param {!Array<HistogramStep>} series sorted by step
 * @param {ChartOptions} options
 * @return {HistogramLayout}
 */
export function layoutHistogram(series, options) {
  const {mode, time, width, height} = options;
  const steps = downsample(series, MAX_RIDGES);
  const plot = plotArea(width, height, HISTOGRAM_MARGIN);
  const layout = {kind: 'histogram', width, height, plot, ridges: [], xTicks: [], yTicks: [], mode, time,
    xTitle: 'value', yTitle: mode === 'offset' ? TIME_TITLES[time] : 'count', xDomain: [0, 1], maxCount: 1,
    sliceHeight: 1};
  if (steps.length === 0) {
    return layout;
  }
  const [rawMin, rawMax] = options.domain || valueRange(steps);
  const bins = steps.map((entry) => rebin(entry.buckets, rawMin, rawMax, BIN_COUNT));
  const [xMin, xMax] = niceDomain(bins[0][0].x, bins[0][BIN_COUNT - 1].x + bins[0][0].dx);
  const maxCount = Math.max(...bins.map((b) => Math.max(...b.map((bin) => bin.y)))) || 1;

  // As in TensorBoard, a ridge may rise 1/2.5 of the chart above its baseline in offset mode.
  const sliceHeight = mode === 'offset' ? (plot.bottom - plot.top) / 2.5 : plot.bottom - plot.top;
  const firstWall = steps[0].wallTime;
  const times = steps.map((entry) => timeOf(entry, time, firstWall));
  const tMin = Math.min(...times);
  const tMax = Math.max(...times);
  const span = tMax - tMin || 1;
  const baselineTop = mode === 'offset' ? plot.top + sliceHeight : plot.bottom;
  const baselineOf = (t) => (mode === 'offset' ? baselineTop + ((t - tMin) / span) * (plot.bottom - baselineTop) :
    plot.bottom);
  const xOf = (value) => plot.left + ((value - xMin) / (xMax - xMin)) * (plot.right - plot.left);

  layout.ridges = steps.map((entry, i) => {
    const baseline = baselineOf(times[i]);
    const points = bins[i].map((bin) => [xOf(bin.x + bin.dx / 2), baseline - (bin.y / maxCount) * sliceHeight]);
    return {entry, step: entry.step, lane: entry.lane, path: ridgePath(points, baseline), baseline,
      shade: steps.length === 1 ? 1 : (times[i] - tMin) / span, bins: bins[i]};
  });
  layout.xDomain = [xMin, xMax];
  layout.maxCount = maxCount;
  layout.sliceHeight = sliceHeight;
  const xCount = Math.max(2, Math.floor((plot.right - plot.left) / 70));
  layout.xTicks = niceTicks(xMin, xMax, xCount).map((value) => ({at: xOf(value), label: formatValue(value)}));
  if (mode === 'offset') {
    layout.yTicks = timeTicks(tMin, tMax, time, 5).map((t) => ({at: baselineOf(t), label: timeLabel(t, time)}));
  } else {
    layout.yTicks = niceTicks(0, maxCount, 4).map((count) => ({
      at: plot.bottom - (count / maxCount) * sliceHeight,
      label: formatValue(count),
    }));
  }
  return layout;
}

/**
 * What lies under the pointer in a histogram chart: the step (nearest baseline in offset mode, nearest outline
 * in overlay mode), the value at the pointer, and the drawn bin holding that value.
 * @param {HistogramLayout} layout
 * @param {number} px pointer x in chart coordinates
 * @param {number} py pointer y in chart coordinates
 * @return {?{ridge: Ridge, value: number, bin: Bin, x: number, y: number}}
 */
export function histogramAt(layout, px, py) {
  const {plot, ridges} = layout;
  if (ridges.length === 0 || px < plot.left || px > plot.right) {
    return null;
  }
  const [xMin, xMax] = layout.xDomain;
  const value = xMin + ((px - plot.left) / (plot.right - plot.left)) * (xMax - xMin);
  const heightOf = (ridge, bin) => ridge.baseline - (bin.y / layout.maxCount) * layout.sliceHeight;
  const binIndex = (ridge) => {
    const {x, dx} = ridge.bins[0];
    return Math.min(ridge.bins.length - 1, Math.max(0, Math.floor((value - x) / dx)));
  };
  let best = ridges[0];
  let bestDistance = Infinity;
  for (const ridge of ridges) {
    const distance = layout.mode === 'offset' ? Math.abs(ridge.baseline - py) :
      Math.abs(heightOf(ridge, ridge.bins[binIndex(ridge)]) - py);
    if (distance < bestDistance) {
      best = ridge;
      bestDistance = distance;
    }
  }
  const bin = best.bins[binIndex(best)];
  return {ridge: best, value, bin, x: px, y: heightOf(best, bin)};
}

/**
 * Lays out a distribution chart: the bands between basis points 0 and 10000, 668 and 9332, 1587 and 8413,
 * 3085 and 6915, darker towards the median line, over the time axis, as TensorBoard's Distributions tab draws.
 * @param {!Array<CompressedStep>} steps sorted by step
 * @param {ChartOptions} options `domain` is the value range of the y axis
 * @return {DistributionLayout}
 */
export function layoutDistribution(steps, options) {
  const {time, width, height} = options;
  const plot = plotArea(width, height, DISTRIBUTION_MARGIN);
  const layout = {kind: 'distribution', width, height, plot, xTicks: [], yTicks: [], time,
    xTitle: TIME_TITLES[time], yTitle: 'value', bands: [], median: '', points: [], yDomain: [0, 1]};
  if (steps.length === 0) {
    return layout;
  }
  const firstWall = steps[0].wallTime;
  const times = steps.map((entry) => timeOf(entry, time, firstWall));
  const tMin = Math.min(...times);
  const tMax = Math.max(...times);
  const [low, high] = options.domain || [
    Math.min(...steps.map((entry) => entry.values[0])),
    Math.max(...steps.map((entry) => entry.values[entry.values.length - 1])),
  ];
  const [yMin, yMax] = niceDomain(low, high);
  const xOf = (t) => (tMax > tMin ? plot.left + ((t - tMin) / (tMax - tMin)) * (plot.right - plot.left) :
    (plot.left + plot.right) / 2);
  const yOf = (value) => plot.bottom - ((value - yMin) / (yMax - yMin)) * (plot.bottom - plot.top);
  const fmt = (n) => String(Math.round(n * 100) / 100);
  const xs = times.map(xOf);
  const count = steps[0].values.length;
  for (let band = 0; band < Math.floor(count / 2); band++) {
    const upper = steps.map((entry, i) => `${fmt(xs[i])},${fmt(yOf(entry.values[count - 1 - band]))}`);
    const lower = steps.map((entry, i) => `${fmt(xs[i])},${fmt(yOf(entry.values[band]))}`).reverse();
    // A single step has no width: give it a thin column so its bands still show.
    const single = steps.length === 1;
    const path = single ?
      columnPath(xs[0], yOf(steps[0].values[count - 1 - band]), yOf(steps[0].values[band]), fmt) :
      `M${upper.join('L')}L${lower.join('L')}Z`;
    layout.bands.push({path, band});
  }
  const middle = Math.floor(count / 2);
  layout.median = steps.length === 1 ? `M${fmt(xs[0] - 3)},${fmt(yOf(steps[0].values[middle]))}h6` :
    `M${steps.map((entry, i) => `${fmt(xs[i])},${fmt(yOf(entry.values[middle]))}`).join('L')}`;
  layout.points = steps.map((entry, i) => ({x: xs[i], entry}));
  layout.yDomain = [yMin, yMax];
  const xCount = Math.max(2, Math.floor((plot.right - plot.left) / 80));
  layout.xTicks = timeTicks(tMin, tMax, time, xCount).map((t) => ({at: xOf(t), label: timeLabel(t, time)}));
  layout.yTicks = niceTicks(yMin, yMax, 5).map((value) => ({at: yOf(value), label: formatValue(value)}));
  return layout;
}

/**
 * @param {number} x
 * @param {number} top
 * @param {number} bottom
 * @param {function(number): string} fmt
 * @return {string}
 */
function columnPath(x, top, bottom, fmt) {
  return `M${fmt(x - 3)},${fmt(top)}H${fmt(x + 3)}V${fmt(bottom)}H${fmt(x - 3)}Z`;
}

/**
 * The step of a distribution chart nearest the pointer.
 * @param {DistributionLayout} layout
 * @param {number} px
 * @return {?{x: number, entry: CompressedStep}}
 */
export function distributionAt(layout, px) {
  if (layout.points.length === 0 || px < layout.plot.left - 8 || px > layout.plot.right + 8) {
    return null;
  }
  let best = layout.points[0];
  for (const point of layout.points) {
    if (Math.abs(point.x - px) < Math.abs(best.x - px)) {
      best = point;
    }
  }
  return best;
}

/**
 * The y coordinate of a value in a distribution chart.
 * @param {DistributionLayout} layout
 * @param {number} value
 * @return {number}
 */
export function distributionY(layout, value) {
  const [yMin, yMax] = layout.yDomain;
  return layout.plot.bottom - ((value - yMin) / (yMax - yMin)) * (layout.plot.bottom - layout.plot.top);
}

/**
 * The common value range of several lanes' distributions.
 * @param {!Array<!Array<CompressedStep>>} lanes
 * @return {?Array<number>}
 */
export function sharedDistributionDomain(lanes) {
  const entries = lanes.flat();
  if (entries.length === 0) {
    return null;
  }
  return [Math.min(...entries.map((e) => e.values[0])), Math.max(...entries.map((e) => e.values[e.values.length - 1]))];
}

/**
 * @param {number} width
 * @param {number} height
 * @param {{top: number, right: number, bottom: number, left: number}} margin
 * @return {Plot}
 */
function plotArea(width, height, margin) {
  return {left: margin.left, top: margin.top, right: width - margin.right, bottom: height - margin.bottom};
}

/**
 * An outline through the bin centres that starts and ends on the baseline, closed for filling.
 * @param {!Array<!Array<number>>} points [[x, y], ...]
 * @param {number} baseline
 * @return {string}
 */
function ridgePath(points, baseline) {
  const fmt = (n) => String(Math.round(n * 100) / 100);
  const first = points[0];
  const last = points[points.length - 1];
  const body = points.map(([x, y]) => `L${fmt(x)},${fmt(y)}`).join('');
  return `M${fmt(first[0])},${fmt(baseline)}${body}L${fmt(last[0])},${fmt(baseline)}Z`;
}

/**
 * Tick values at 1, 2 or 5 times a power of ten, covering [min, max].
 * @param {number} min
 * @param {number} max
 * @param {number} count roughly how many ticks
 * @return {!Array<number>}
 */
export function niceTicks(min, max, count) {
  if (!(max > min)) {
    return [min];
  }
  const step = niceStep((max - min) / count);
  const ticks = [];
  for (let i = Math.ceil(min / step); i * step <= max + step * 1e-9; i++) {
    // Multiplying the integer index avoids the drift of repeated addition (0.1 + 0.2 ...).
    ticks.push(Number((i * step).toPrecision(12)));
  }
  return ticks;
}

/**
 * Widens [min, max] outwards to multiples of a nice step, like d3's scale.nice().
 * @param {number} min
 * @param {number} max
 * @return {!Array<number>}
 */
export function niceDomain(min, max) {
  if (!(max > min)) {
    return [min - 1, max + 1];
  }
  const step = niceStep((max - min) / 10);
  return [Math.floor(min / step) * step, Math.ceil(max / step) * step].map((v) => Number(v.toPrecision(12)));
}

/**
 * @param {number} rough
 * @return {number}
 */
function niceStep(rough) {
  const power = 10 ** Math.floor(Math.log10(rough));
  const fraction = rough / power;
  // Thresholds at the geometric midpoints between 1, 2, 5 and 10, as d3 chooses tick steps.
  if (fraction >= Math.sqrt(50)) {
    return 10 * power;
  }
  if (fraction >= Math.sqrt(10)) {
    return 5 * power;
  }
  return fraction >= Math.sqrt(2) ? 2 * power : power;
}

/**
 * The hue of a lane; the stylesheet turns it into light and dark shades for each theme.
 * @param {number} lane
 * @return {number}
 */
export function laneHue(lane) {
  return LANE_HUES[lane % LANE_HUES.length];
}
