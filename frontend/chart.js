// Geometry of a histogram chart drawn the way TensorBoard does: ridges offset by step, or overlaid.

import {rebin, valueRange, downsample} from './histogram.js';
import {formatValue} from './format.js';

/**
 * @typedef {import('./histogram.js').HistogramStep} HistogramStep
 * @typedef {{step: number, lane: number, path: string, baseline: number, shade: number}} Ridge
 * @typedef {{at: number, label: string}} Tick
 * @typedef {{width: number, height: number,
 *            plot: {left: number, top: number, right: number, bottom: number},
 *            ridges: !Array<Ridge>, xTicks: !Array<Tick>, yTicks: !Array<Tick>,
 *            yAxisTitle: string}} ChartLayout
 */

/** @type {number} Width of every chart's SVG viewBox; the SVG itself scales to its box. */
export const CHART_WIDTH = 440;
/** @type {number} Height of every chart's SVG viewBox. */
export const CHART_HEIGHT = 300;
/** @type {number} TensorBoard keeps up to 500 histograms per tag; a ridge plot stays readable with fewer. */
export const MAX_RIDGES = 100;
const BIN_COUNT = 30;
/** Hues of lanes 0, 1, 2, ...: distinct at a glance, orange first like TensorBoard's first run. */
const LANE_HUES = [24, 207, 140, 280, 340, 180, 50, 0];
// The top margin leaves room for the right axis' title above the highest tick.
const MARGIN = {top: 20, right: 56, bottom: 24, left: 12};

/**
 * Lays out one chart. In offset mode each step is a filled ridge whose baseline moves down with
 * the step (earliest at the back, top), the step axis on the right. In overlay mode every step's
 * outline shares one baseline and the right axis counts values, as in TensorBoard.
 * @param {!Array<HistogramStep>} series sorted by step
 * @param {string} mode 'offset' or 'overlay'
 * @return {ChartLayout}
 */
export function layoutChart(series, mode) {
  const steps = downsample(series, MAX_RIDGES);
  const plot = {
    left: MARGIN.left,
    top: MARGIN.top,
    right: CHART_WIDTH - MARGIN.right,
    bottom: CHART_HEIGHT - MARGIN.bottom,
  };
  const layout = {width: CHART_WIDTH, height: CHART_HEIGHT, plot, ridges: [], xTicks: [],
    yTicks: [], yAxisTitle: mode === 'offset' ? 'step' : 'count'};
  if (steps.length === 0) {
    return layout;
  }
  const [rawMin, rawMax] = valueRange(steps);
  const bins = steps.map((entry) => rebin(entry.buckets, rawMin, rawMax, BIN_COUNT));
  const [xMin, xMax] = niceDomain(bins[0][0].x, bins[0][BIN_COUNT - 1].x + bins[0][0].dx);
  const maxCount = Math.max(...bins.map((b) => Math.max(...b.map((bin) => bin.y)))) || 1;

  // As in TensorBoard, a ridge may rise 1/2.5 of the chart above its baseline in offset mode.
  const sliceHeight = mode === 'offset' ? CHART_HEIGHT / 2.5 : plot.bottom - plot.top;
  const firstStep = steps[0].step;
  const lastStep = steps[steps.length - 1].step;
  const stepSpan = lastStep - firstStep || 1;
  const baselineTop = mode === 'offset' ? plot.top + sliceHeight : plot.bottom;
  const baselineOf = (step) =>
    mode === 'offset' ? baselineTop + ((step - firstStep) / stepSpan) * (plot.bottom - baselineTop) : plot.bottom;
  const xOf = (value) => plot.left + ((value - xMin) / (xMax - xMin)) * (plot.right - plot.left);

  layout.ridges = steps.map((entry, i) => {
    const baseline = baselineOf(entry.step);
    const points = bins[i].map((bin) => [xOf(bin.x + bin.dx / 2), baseline - (bin.y / maxCount) * sliceHeight]);
    return {
      step: entry.step,
      lane: entry.lane,
      path: ridgePath(points, baseline),
      baseline,
      shade: steps.length === 1 ? 1 : (entry.step - firstStep) / stepSpan,
    };
  });
  layout.xTicks = niceTicks(xMin, xMax, 5).map((value) => ({at: xOf(value), label: formatValue(value)}));
  if (mode === 'offset') {
    layout.yTicks = niceTicks(firstStep, lastStep, 5)
      .filter((step) => Number.isInteger(step))
      .map((step) => ({at: baselineOf(step), label: String(step)}));
  } else {
    layout.yTicks = niceTicks(0, maxCount, 4).map((count) => ({
      at: plot.bottom - (count / maxCount) * sliceHeight,
      label: formatValue(count),
    }));
  }
  return layout;
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
 * Colour of a ridge: the lane's hue, light for early steps and dark for late ones, as TensorBoard
 * shades a histogram through time.
 * @param {number} lane
 * @param {number} shade 0 for the first step, 1 for the last
 * @return {string}
 */
export function ridgeColor(lane, shade) {
  const hue = LANE_HUES[lane % LANE_HUES.length];
  return `hsl(${hue}, 80%, ${Math.round(74 - 36 * shade)}%)`;
}

/**
 * The lane's colour at full strength, for legends and captions.
 * @param {number} lane
 * @return {string}
 */
export function laneColor(lane) {
  return ridgeColor(lane, 0.6);
}
