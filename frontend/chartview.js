// Draws laid-out charts as SVG with TensorBoard's hover readout: a crosshair, the step under the pointer
// highlighted, and a box with step, wall time, relative time, bucket range and count (or the percentiles), and
// the variable of the lane. Text goes in through textContent only.

import {distributionAt, distributionY, histogramAt, laneHue} from './chart.js';
import {NORMAL_HISTOGRAM_BPS} from './distribution.js';
import {formatDuration, formatValue, formatWallTime, visible} from './format.js';

/**
 * @typedef {import('./chart.js').HistogramLayout} HistogramLayout
 * @typedef {import('./chart.js').DistributionLayout} DistributionLayout
 * @typedef {{label: string, laneName: function(number): string, firstWallTime: number}} DrawOptions
 *   laneName: the variable (or file) behind a lane, for the readout.
 */

const SVG_NS = 'http://www.w3.org/2000/svg';

/**
 * @param {string} tagName
 * @param {!Object<string, (string|number)>} attributes
 * @param {string=} text
 * @return {!SVGElement}
 */
function svgEl(tagName, attributes, text) {
  const element = document.createElementNS(SVG_NS, tagName);
  for (const [name, value] of Object.entries(attributes)) {
    element.setAttribute(name, String(value));
  }
  if (text !== undefined) {
    element.textContent = text;
  }
  return element;
}

/**
 * The axes of either chart: ticks and labels, and a title under the x axis and beside the y axis.
 * @param {HistogramLayout|DistributionLayout} layout
 * @param {string} ySide 'left' or 'right'
 * @return {!SVGElement}
 */
function axes(layout, ySide) {
  const {plot} = layout;
  const group = svgEl('g', {class: 'axis'});
  group.append(svgEl('line', {x1: plot.left, x2: plot.right, y1: plot.bottom, y2: plot.bottom, class: 'domain'}));
  for (const tick of layout.xTicks) {
    group.append(svgEl('line', {x1: tick.at, x2: tick.at, y1: plot.bottom, y2: plot.bottom + 5}));
    group.append(svgEl('text', {x: tick.at, y: plot.bottom + 17, 'text-anchor': 'middle'}, tick.label));
  }
  const right = ySide === 'right';
  const yAxisX = right ? plot.right : plot.left;
  group.append(svgEl('line', {x1: yAxisX, x2: yAxisX, y1: plot.top, y2: plot.bottom, class: 'domain'}));
  for (const tick of layout.yTicks) {
    const outer = right ? yAxisX + 5 : yAxisX - 5;
    group.append(svgEl('line', {x1: yAxisX, x2: outer, y1: tick.at, y2: tick.at}));
    group.append(svgEl('text', {x: right ? outer + 3 : outer - 3, y: tick.at + 4,
      'text-anchor': right ? 'start' : 'end'}, tick.label));
    if (layout.kind === 'distribution') {
      group.append(svgEl('line', {x1: plot.left, x2: plot.right, y1: tick.at, y2: tick.at, class: 'grid'}));
    }
  }
  group.append(svgEl('text', {x: (plot.left + plot.right) / 2, y: layout.height - 6, 'text-anchor': 'middle',
    class: 'axis-title'}, layout.xTitle));
  const titleX = right ? layout.width - 6 : 12;
  const titleY = (plot.top + plot.bottom) / 2;
  group.append(svgEl('text', {x: titleX, y: titleY, 'text-anchor': 'middle', class: 'axis-title',
    transform: `rotate(${right ? 90 : -90} ${titleX} ${titleY})`}, layout.yTitle));
  return group;
}

/**
 * @param {HistogramLayout|DistributionLayout} layout
 * @param {string} label
 * @return {!SVGElement}
 */
function frame(layout, label) {
  const svg = svgEl('svg', {viewBox: `0 0 ${layout.width} ${layout.height}`, width: layout.width,
    height: layout.height, class: `chart chart-${layout.kind}${layout.kind === 'histogram' ? ` mode-${layout.mode}` : ''}`,
    role: 'img'});
  svg.setAttribute('aria-label', visible(label));
  return svg;
}

/**
 * @param {HistogramLayout|DistributionLayout} layout
 * @return {!SVGElement}
 */
function emptyChart(layout) {
  return svgEl('text', {x: layout.width / 2, y: layout.height / 2, 'text-anchor': 'middle', class: 'empty'},
    'No histograms at any step');
}

/**
 * Pointer position in the chart's own coordinates.
 * @param {!SVGElement} svg
 * @param {HistogramLayout|DistributionLayout} layout
 * @param {!PointerEvent} event
 * @return {!Array<number>}
 */
function pointerIn(svg, layout, event) {
  const rect = svg.getBoundingClientRect();
  return [(event.clientX - rect.left) * (layout.width / rect.width),
    (event.clientY - rect.top) * (layout.height / rect.height)];
}

/**
 * Puts the readout box beside the pointer, on the side with room.
 * @param {!HTMLElement} readout
 * @param {!HTMLElement} slot
 * @param {number} x pointer x within the slot
 * @param {number} y pointer y within the slot
 */
function placeReadout(readout, slot, x, y) {
  readout.hidden = false;
  const width = readout.offsetWidth;
  const left = x + 14 + width > slot.clientWidth ? Math.max(0, x - 14 - width) : x + 14;
  readout.style.left = `${left}px`;
  readout.style.top = `${Math.max(0, Math.min(y - 10, slot.clientHeight - readout.offsetHeight))}px`;
}

/**
 * Fills the readout with labelled rows.
 * @param {!HTMLElement} readout
 * @param {!Array<!Array<string>>} rows [label, value] pairs
 */
function fillReadout(readout, rows) {
  readout.replaceChildren(...rows.map(([name, value]) => {
    const row = document.createElement('div');
    const term = document.createElement('span');
    term.className = 'readout-name';
    term.textContent = name;
    const text = document.createElement('span');
    text.className = 'readout-value';
    text.textContent = visible(value);
    row.append(term, text);
    return row;
  }));
}

/**
 * The readout box of a chart slot (created once per slot).
 * @param {!HTMLElement} slot
 * @return {!HTMLElement}
 */
function readoutOf(slot) {
  let readout = /** @type {?HTMLElement} */ (slot.querySelector('.readout'));
  if (!readout) {
    readout = document.createElement('div');
    readout.className = 'readout';
    readout.setAttribute('data-testid', 'hover-readout');
    readout.setAttribute('role', 'status');
    readout.hidden = true;
    slot.append(readout);
  }
  return readout;
}

/**
 * Draws a histogram chart into `slot`, with its hover readout.
 * @param {!HTMLElement} slot
 * @param {HistogramLayout} layout
 * @param {DrawOptions} options
 */
export function drawHistogram(slot, layout, options) {
  const svg = frame(layout, options.label);
  slot.querySelector('svg')?.remove();
  const readout = readoutOf(slot);
  readout.hidden = true;
  if (layout.ridges.length === 0) {
    svg.append(emptyChart(layout));
    slot.prepend(svg);
    return;
  }
  const ridges = svgEl('g', {class: 'ridges'});
  const paths = layout.ridges.map((ridge) => {
    const path = svgEl('path', {d: ridge.path, class: 'ridge', 'data-step': ridge.step});
    path.style.setProperty('--hue', String(laneHue(ridge.lane)));
    path.style.setProperty('--shade', ridge.shade.toFixed(3));
    ridges.append(path);
    return path;
  });
  const crosshair = svgEl('line', {class: 'crosshair', y1: layout.plot.top, y2: layout.plot.bottom,
    visibility: 'hidden'});
  const dot = svgEl('circle', {class: 'hover-dot', r: 3.5, visibility: 'hidden'});
  svg.append(axes(layout, 'right'), ridges, crosshair, dot);
  slot.prepend(svg);

  let hovered = null;
  svg.addEventListener('pointermove', (event) => {
    const [px, py] = pointerIn(svg, layout, event);
    const hit = histogramAt(layout, px, py);
    hovered?.classList.remove('hovered');
    if (!hit) {
      crosshair.setAttribute('visibility', 'hidden');
      dot.setAttribute('visibility', 'hidden');
      readout.hidden = true;
      return;
    }
    hovered = paths[layout.ridges.indexOf(hit.ridge)];
    hovered.classList.add('hovered');
    crosshair.setAttribute('x1', String(px));
    crosshair.setAttribute('x2', String(px));
    crosshair.setAttribute('visibility', 'visible');
    dot.setAttribute('cx', String(px));
    dot.setAttribute('cy', String(hit.y));
    dot.setAttribute('visibility', 'visible');
    const {entry} = hit.ridge;
    const {bin} = hit;
    // The bin drawn under the pointer, as TensorBoard's readout gives it: its range and the count it holds once the
    // served buckets are spread over the chart's bins.
    fillReadout(readout, [
      ['step', String(entry.step)],
      ['wall time', formatWallTime(entry.wallTime)],
      ['relative', formatDuration(entry.wallTime - options.firstWallTime)],
      ['value', formatValue(hit.value)],
      ['bin', `[${formatValue(bin.x)}, ${formatValue(bin.x + bin.dx)})`],
      ['count', formatValue(bin.y)],
      ['lane', `${entry.lane} → ${options.laneName(entry.lane)}`],
    ]);
    readout.setAttribute('data-step', String(entry.step));
    readout.setAttribute('data-value', String(hit.value));
    readout.setAttribute('data-count', String(bin.y));
    readout.setAttribute('data-left', String(bin.x));
    readout.setAttribute('data-right', String(bin.x + bin.dx));
    const rect = svg.getBoundingClientRect();
    placeReadout(readout, slot, event.clientX - rect.left, event.clientY - rect.top);
  });
  svg.addEventListener('pointerleave', () => {
    hovered?.classList.remove('hovered');
    crosshair.setAttribute('visibility', 'hidden');
    dot.setAttribute('visibility', 'hidden');
    readout.hidden = true;
  });
}

/**
 * Draws a distribution chart into `slot`, with its hover readout (the percentiles at the nearest step).
 * @param {!HTMLElement} slot
 * @param {DistributionLayout} layout
 * @param {DrawOptions & {lane: number}} options
 */
export function drawDistribution(slot, layout, options) {
  const svg = frame(layout, options.label);
  slot.querySelector('svg')?.remove();
  const readout = readoutOf(slot);
  readout.hidden = true;
  if (layout.points.length === 0) {
    svg.append(emptyChart(layout));
    slot.prepend(svg);
    return;
  }
  const bands = svgEl('g', {class: 'bands'});
  bands.style.setProperty('--hue', String(laneHue(options.lane)));
  for (const band of layout.bands) {
    bands.append(svgEl('path', {d: band.path, class: `band band-${band.band}`, 'data-testid': 'band'}));
  }
  bands.append(svgEl('path', {d: layout.median, class: 'median'}));
  const crosshair = svgEl('line', {class: 'crosshair', y1: layout.plot.top, y2: layout.plot.bottom,
    visibility: 'hidden'});
  const dots = svgEl('g', {class: 'hover-dots', visibility: 'hidden'});
  svg.append(axes(layout, 'left'), bands, crosshair, dots);
  slot.prepend(svg);

  svg.addEventListener('pointermove', (event) => {
    const [px] = pointerIn(svg, layout, event);
    const point = distributionAt(layout, px);
    if (!point) {
      crosshair.setAttribute('visibility', 'hidden');
      dots.setAttribute('visibility', 'hidden');
      readout.hidden = true;
      return;
    }
    crosshair.setAttribute('x1', String(point.x));
    crosshair.setAttribute('x2', String(point.x));
    crosshair.setAttribute('visibility', 'visible');
    dots.replaceChildren(...point.entry.values.map((value) =>
      svgEl('circle', {cx: point.x, cy: distributionY(layout, value), r: 2.5, class: 'hover-dot'})));
    dots.setAttribute('visibility', 'visible');
    const {entry} = point;
    const percentiles = entry.values.map((value, i) => [`${NORMAL_HISTOGRAM_BPS[i] / 100}%`, formatValue(value)])
      .reverse();
    fillReadout(readout, [
      ['step', String(entry.step)],
      ['wall time', formatWallTime(entry.wallTime)],
      ['relative', formatDuration(entry.wallTime - options.firstWallTime)],
      ...percentiles,
      ['lane', `${options.lane} → ${options.laneName(options.lane)}`],
    ]);
    readout.setAttribute('data-step', String(entry.step));
    const rect = svg.getBoundingClientRect();
    placeReadout(readout, slot, event.clientX - rect.left, event.clientY - rect.top);
  });
  svg.addEventListener('pointerleave', () => {
    crosshair.setAttribute('visibility', 'hidden');
    dots.setAttribute('visibility', 'hidden');
    readout.hidden = true;
  });
}
