// DOM builders for the VarScope tab. Text goes in through textContent and attributes only:
// run, tag and variable names come from files on disk and may contain markup.

import {baseName, formatShape, laneText, plural, stepRange} from './format.js';
import {cleanText, summaryText} from './overview.js';
import {laneColor, ridgeColor} from './chart.js';

/**
 * @typedef {import('./overview.js').Report} Report
 * @typedef {import('./overview.js').RunCollision} RunCollision
 * @typedef {import('./overview.js').RunWarning} RunWarning
 * @typedef {import('./overview.js').Lane} Lane
 * @typedef {import('./tree.js').TreeNode} TreeNode
 * @typedef {import('./chart.js').ChartLayout} ChartLayout
 * @typedef {{run: string, tag: string, lane: ?number}} HistogramTarget
 * @typedef {{root: !HTMLElement, summary: !HTMLElement, status: !HTMLElement,
 *            reload: !HTMLButtonElement, banner: !HTMLElement, sidebar: !HTMLElement,
 *            main: !HTMLElement}} Shell
 * @typedef {{element: !HTMLElement, input: !HTMLInputElement, message: !HTMLElement,
 *            body: !HTMLElement}} TreePanel
 */

const SVG_NS = 'http://www.w3.org/2000/svg';

/**
 * Creates an element with a class, a test id and text.
 * @param {string} tagName
 * @param {{className?: string, testid?: string, text?: string, title?: string}=} options
 * @param {!Array<!Node>=} children
 * @return {!HTMLElement}
 */
function el(tagName, options = {}, children = []) {
  const element = document.createElement(tagName);
  if (options.className) {
    element.className = options.className;
  }
  if (options.testid) {
    element.setAttribute('data-testid', options.testid);
  }
  if (options.text !== undefined) {
    element.textContent = options.text;
  }
  if (options.title) {
    element.setAttribute('title', options.title);
  }
  element.append(...children);
  return element;
}

/**
 * @param {string} tagName
 * @param {!Object<string, (string|number)>} attributes
 * @return {!SVGElement}
 */
function svgEl(tagName, attributes) {
  const element = document.createElementNS(SVG_NS, tagName);
  for (const [name, value] of Object.entries(attributes)) {
    element.setAttribute(name, String(value));
  }
  return element;
}

/**
 * @param {string} label
 * @param {function(): void} onClick
 * @param {{className?: string, testid?: string, title?: string}=} options
 * @return {!HTMLButtonElement}
 */
function button(label, onClick, options = {}) {
  const element = /** @type {!HTMLButtonElement} */ (el('button', {...options, text: label}));
  element.type = 'button';
  element.addEventListener('click', onClick);
  return element;
}

/**
 * The page frame: a header with the summary and Reload, an error banner, the tree on the side and
 * the main area for the overview or the histograms.
 * @param {function(): void} onReload
 * @return {Shell}
 */
export function createShell(onReload) {
  const summary = el('div', {className: 'summary', testid: 'summary'});
  const status = el('span', {className: 'status'});
  const reload = button('Reload', onReload, {className: 'reload', testid: 'reload',
    title: 'Read the logdir again (the report also refreshes every 30 s)'});
  const header = el('header', {className: 'header'}, [
    el('h1', {text: 'VarScope'}),
    summary,
    el('div', {className: 'header-actions'}, [status, reload]),
  ]);
  const banner = el('div', {className: 'banner'});
  const sidebar = el('aside', {className: 'sidebar'});
  const main = el('main', {className: 'main'});
  const root = el('div', {className: 'varscope'}, [header, banner, el('div', {className: 'layout'}, [sidebar, main])]);
  return {root, summary, status, reload: /** @type {!HTMLButtonElement} */ (reload), banner, sidebar, main};
}

/**
 * A visible "loading" state.
 * @param {string} text
 * @return {!HTMLElement}
 */
export function createLoading(text) {
  const element = el('div', {className: 'loading', testid: 'loading'}, [
    el('span', {className: 'spinner'}),
    el('span', {text}),
  ]);
  element.setAttribute('role', 'status');
  return element;
}

/**
 * A visible error: what failed, and the message (HTTP status and the server's text).
 * @param {string} what
 * @param {string} message
 * @return {!HTMLElement}
 */
export function createError(what, message) {
  const element = el('div', {className: 'error', testid: 'error'}, [
    el('strong', {text: what}),
    el('span', {className: 'error-message', text: message}),
  ]);
  element.setAttribute('role', 'alert');
  return element;
}

/**
 * Fills the summary line of the header.
 * @param {!HTMLElement} summary
 * @param {Report} report
 */
export function showSummary(summary, report) {
  summary.textContent = summaryText(report);
  summary.classList.toggle('has-collisions', report.summary.collisions > 0);
  summary.setAttribute('title', `logdir: ${report.logdir}`);
}

/**
 * The overview: every collision worst first (or a plain "no collisions" line), then warnings.
 * @param {Report} report
 * @param {!Array<RunCollision>} collisions output of collisionList
 * @param {!Array<RunWarning>} warnings output of warningList
 * @param {function(HistogramTarget): void} onOpen
 * @return {!HTMLElement}
 */
export function createOverview(report, collisions, warnings, onOpen) {
  const section = el('section', {className: 'overview', testid: 'overview'});
  if (collisions.length === 0) {
    section.append(el('p', {className: 'clean', testid: 'no-collisions', text: cleanText(report)}),
      el('p', {className: 'hint', text: 'Browse the histograms by variable in the tree.'}));
  } else {
    section.append(el('h2', {text: `${plural(collisions.length, 'colliding tag')}, worst first`}));
    section.append(...collisions.map((item) => createCollisionCard(item, onOpen)));
  }
  if (warnings.length > 0) {
    section.append(createWarnings(warnings));
  }
  return section;
}

/**
 * One collision: run, tag, kind, writers, steps, the variable behind each lane, why and the fix.
 * Clicking the card opens its histograms.
 * @param {RunCollision} item
 * @param {function(HistogramTarget): void} onOpen
 * @return {!HTMLElement}
 */
export function createCollisionCard(item, onOpen) {
  const {run, collision, checkpoint} = item;
  const open = () => onOpen({run, tag: collision.tag, lane: null});
  const card = el('article', {className: `card collision kind-${collision.kind}`, testid: 'collision'});
  card.setAttribute('data-run', run);
  card.setAttribute('data-tag', collision.tag);

  const title = el('h3', {className: 'card-title'}, [
    el('span', {className: 'tag-name', text: collision.tag}),
    el('span', {className: `kind-badge`, text: collision.kind}),
  ]);
  const facts = el('dl', {className: 'facts'});
  const fact = (term, value) => facts.append(el('dt', {text: term}), el('dd', {text: value}));
  fact('Run', run);
  fact(collision.kind === 'cross-file' ? 'Files per step' : 'Writers per step', String(collision.writers));
  fact('Steps affected', `${collision.steps} (${stepRange(collision.first_step, collision.last_step)})`);
  fact('Event files', collision.files.map(baseName).join(', '));
  if (collision.lanes.length > 0) {
    fact('Checkpoint', checkpoint ? `${baseName(checkpoint.path)} (${checkpoint.format})` : 'none found');
  }

  const lanes = el('ol', {className: 'lanes'});
  for (const lane of collision.lanes) {
    lanes.append(createLaneRow(lane));
  }
  card.append(title, facts);
  if (collision.lanes.length > 0) {
    card.append(lanes);
  }
  card.append(
    el('p', {className: 'explanation', text: collision.explanation}),
    el('p', {className: 'fix'}, [el('strong', {text: 'Fix: '}), document.createTextNode(collision.fix)]),
    el('div', {className: 'card-actions'}, [
      button('Compare lanes with what TensorBoard shows →', open, {className: 'open', testid: 'open-histograms'}),
    ]),
  );
  card.addEventListener('click', (event) => {
    // Buttons handle themselves; selecting text in the card should not navigate.
    const target = /** @type {!Element} */ (event.target);
    if (!target.closest('button') && !String(window.getSelection())) {
      open();
    }
  });
  return card;
}

/**
 * @param {Lane} lane
 * @return {!HTMLElement}
 */
function createLaneRow(lane) {
  const row = el('li', {className: 'lane', testid: 'lane', title: lane.evidence});
  row.setAttribute('data-lane', String(lane.lane));
  const swatch = el('span', {className: 'swatch'});
  swatch.style.background = laneColor(lane.lane);
  const name = el('span', {className: lane.variable === null ? 'lane-name unattributed' : 'lane-name',
    text: laneText(lane)});
  const details = [formatShape(lane.shape), plural(lane.elements, 'element'), lane.checkpoint_key || '']
    .filter((part) => part !== '')
    .join(' · ');
  row.append(swatch, name, el('span', {className: 'lane-details', text: details}),
    el('div', {className: 'evidence', text: lane.evidence}));
  return row;
}

/**
 * Damaged event files: file, byte offset and message per warning.
 * @param {!Array<RunWarning>} warnings
 * @return {!HTMLElement}
 */
export function createWarnings(warnings) {
  const list = el('ul', {className: 'warning-list'});
  for (const warning of warnings) {
    const item = el('li', {className: 'warning', testid: 'warning'}, [
      el('span', {
        className: 'warning-where',
        text: warning.run ? `${warning.run} · ${warning.file} @ byte ${warning.offset}` : warning.file,
      }),
      el('span', {className: 'warning-message', text: warning.message}),
    ]);
    item.setAttribute('data-run', warning.run);
    list.append(item);
  }
  return el('section', {className: 'card warnings', testid: 'warnings'}, [
    el('h2', {text: `${plural(warnings.length, 'warning')}: files read in part or not at all`}),
    list,
  ]);
}

/**
 * The tree panel: a regex filter (like TensorBoard's tag filter) above the tree.
 * @param {function(string): void} onFilter called with the filter text on every edit
 * @return {TreePanel}
 */
export function createTreePanel(onFilter) {
  const input = /** @type {!HTMLInputElement} */ (el('input', {className: 'filter', testid: 'tree-filter'}));
  input.type = 'search';
  input.placeholder = 'Filter tags and variables (regex)';
  input.setAttribute('aria-label', 'Filter tags and variables (regular expression)');
  input.spellcheck = false;
  input.addEventListener('input', () => onFilter(input.value));
  const message = el('div', {className: 'filter-message', testid: 'tree-filter-message'});
  message.setAttribute('aria-live', 'polite');
  const body = el('div', {className: 'tree', testid: 'tree'});
  body.setAttribute('role', 'tree');
  const element = el('section', {className: 'tree-panel'}, [
    el('h2', {text: 'Histograms by variable'}), input, message, body,
  ]);
  return {element, input, message, body};
}

/**
 * Shows the filter state under the input: an invalid regex is an error and filters nothing.
 * @param {TreePanel} panel
 * @param {?string} error
 * @param {number} shown tag entries shown
 * @param {number} total tag entries in all
 */
export function showFilterState(panel, error, shown, total) {
  panel.input.classList.toggle('invalid', error !== null);
  panel.input.setAttribute('aria-invalid', String(error !== null));
  panel.message.classList.toggle('invalid', error !== null);
  panel.message.setAttribute('data-testid', error !== null ? 'tree-filter-error' : 'tree-filter-message');
  if (error !== null) {
    panel.message.textContent = `${error}. Showing everything.`;
  } else {
    panel.message.textContent = shown === total ? '' : `${shown} of ${plural(total, 'histogram')} match`;
  }
}

/**
 * Replaces the tree's content. Nodes are collapsible; `collapsed` holds the ids the user closed
 * (ignored while filtering so every match is visible).
 * @param {!HTMLElement} body
 * @param {!Array<TreeNode>} roots
 * @param {{collapsed: !Set<string>, filtering: boolean, selected: ?HistogramTarget,
 *          onOpen: function(HistogramTarget): void}} options
 */
export function renderTree(body, roots, options) {
  body.textContent = '';
  if (roots.length === 0) {
    body.append(el('p', {className: 'hint', text: options.filtering ? 'Nothing matches the filter.' : 'No runs yet.'}));
    return;
  }
  const list = el('ul', {className: 'tree-level'});
  list.append(...roots.map((root) => createTreeItem(root, options)));
  body.append(list);
}

/**
 * @param {TreeNode} node
 * @param {{collapsed: !Set<string>, filtering: boolean, selected: ?HistogramTarget,
 *          onOpen: function(HistogramTarget): void}} options
 * @return {!HTMLElement}
 */
function createTreeItem(node, options) {
  const item = el('li', {className: `tree-item kind-${node.kind}`});
  item.setAttribute('role', 'treeitem');
  if (node.kind === 'tag') {
    const leaf = button(node.label, () => options.onOpen({run: node.run, tag: node.tag, lane: node.lane}),
      {className: node.colliding ? 'tree-leaf colliding' : 'tree-leaf', testid: 'tree-leaf',
        title: node.variable ? `${node.tag}\n${node.variable.path}` : node.tag});
    leaf.setAttribute('data-run', node.run);
    leaf.setAttribute('data-tag', node.tag);
    if (node.lane !== null) {
      leaf.setAttribute('data-lane', String(node.lane));
    }
    const selected = options.selected;
    if (selected && selected.run === node.run && selected.tag === node.tag &&
        (selected.lane === null || selected.lane === node.lane)) {
      leaf.classList.add('selected');
    }
    if (node.colliding) {
      leaf.append(el('span', {className: 'badge', text: 'collides'}));
    }
    item.append(leaf);
    return item;
  }
  const details = el('details', {className: 'tree-node', testid: 'tree-node'});
  details.setAttribute('data-kind', node.kind);
  details.open = options.filtering || !options.collapsed.has(node.id);
  details.addEventListener('toggle', () => {
    if (!options.filtering) {
      if (details.open) {
        options.collapsed.delete(node.id);
      } else {
        options.collapsed.add(node.id);
      }
    }
  });
  const summary = el('summary', {title: node.variable ? node.variable.path : node.path}, [
    el('span', {className: 'node-label', text: node.label}),
  ]);
  if (node.variable && node.variable.shape) {
    summary.append(el('span', {className: 'shape', text: formatShape(node.variable.shape)}));
  }
  if (node.colliding > 0) {
    summary.append(el('span', {className: 'badge', text: `⚠ ${node.colliding}`,
      title: `${plural(node.colliding, 'colliding tag entry', 'colliding tag entries')} below`}));
  }
  const children = el('ul', {className: 'tree-level'});
  children.append(...node.children.map((child) => createTreeItem(child, options)));
  if (node.children.length === 0) {
    const why = node.kind === 'run' ? 'no layer groups or colliding tags reported' : 'no histogram logged';
    children.append(el('li', {className: 'hint', text: why}));
  }
  details.append(summary, children);
  item.append(details);
  return item;
}

/**
 * The histograms screen's frame: back link, title, explanation slot, mode toggle and chart grid.
 * @param {HistogramTarget} target
 * @param {string} mode 'offset' or 'overlay'
 * @param {{onBack: function(): void, onMode: function(string): void}} handlers
 * @return {{element: !HTMLElement, note: !HTMLElement, charts: !HTMLElement}}
 */
export function createHistogramsView(target, mode, handlers) {
  const toggle = el('div', {className: 'mode-toggle'});
  toggle.setAttribute('role', 'group');
  toggle.setAttribute('aria-label', 'Histogram mode');
  for (const name of ['offset', 'overlay']) {
    const choice = button(name, () => handlers.onMode(name), {testid: `mode-${name}`,
      className: name === mode ? 'active' : '',
      title: name === 'offset' ? 'One ridge per step, later steps in front' : 'All steps on one baseline'});
    choice.setAttribute('aria-pressed', String(name === mode));
    toggle.append(choice);
  }
  const title = el('h2', {className: 'histograms-title'}, [
    el('span', {className: 'tag-name', text: target.tag}),
    el('span', {className: 'run-name', text: `run ${target.run}`}),
  ]);
  const note = el('div', {className: 'note'});
  const charts = el('div', {className: 'charts'});
  const element = el('section', {className: 'histograms', testid: 'histograms'}, [
    el('div', {className: 'histograms-bar'}, [
      button('← Overview', handlers.onBack, {className: 'back', testid: 'back'}),
      title,
      toggle,
    ]),
    note,
    charts,
  ]);
  element.setAttribute('data-run', target.run);
  element.setAttribute('data-tag', target.tag);
  return {element, note, charts};
}

/**
 * Marks the active mode button after a switch.
 * @param {!HTMLElement} view element from createHistogramsView
 * @param {string} mode
 */
export function showMode(view, mode) {
  for (const name of ['offset', 'overlay']) {
    const choice = view.querySelector(`[data-testid="mode-${name}"]`);
    choice.classList.toggle('active', name === mode);
    choice.setAttribute('aria-pressed', String(name === mode));
  }
}

/**
 * A figure holding one chart (or its loading/error state) with a caption.
 * @param {{testid: string, lane: ?number, title: string, subtitle: string, accent: boolean}} options
 * @return {{figure: !HTMLElement, slot: !HTMLElement}}
 */
export function createChartFigure(options) {
  const figure = el('figure', {className: options.accent ? 'chart-card tensorboard-view' : 'chart-card',
    testid: options.testid});
  if (options.lane !== null) {
    figure.setAttribute('data-lane', String(options.lane));
  }
  const caption = el('figcaption', {}, [el('span', {className: 'chart-title', text: options.title})]);
  if (options.lane !== null) {
    const swatch = el('span', {className: 'swatch'});
    swatch.style.background = laneColor(options.lane);
    caption.prepend(swatch);
  }
  caption.append(el('span', {className: 'chart-subtitle', text: options.subtitle}));
  const slot = el('div', {className: 'chart-slot'});
  figure.append(caption, slot);
  return {figure, slot};
}

/**
 * Draws a laid-out chart as SVG: filled ridges in offset mode, outlines in overlay mode, ridges
 * coloured by the lane that wrote them.
 * @param {ChartLayout} layout
 * @param {string} mode
 * @param {string} label accessible name of the chart
 * @return {!SVGElement}
 */
export function createChartSvg(layout, mode, label) {
  const svg = svgEl('svg', {viewBox: `0 0 ${layout.width} ${layout.height}`, class: `chart mode-${mode}`,
    role: 'img', preserveAspectRatio: 'xMidYMid meet'});
  svg.setAttribute('aria-label', label);
  const {plot} = layout;
  if (layout.ridges.length === 0) {
    const text = svgEl('text', {x: layout.width / 2, y: layout.height / 2, 'text-anchor': 'middle', class: 'empty'});
    text.textContent = 'No histograms at any step';
    svg.append(text);
    return svg;
  }
  const grid = svgEl('g', {class: 'axis'});
  for (const tick of layout.xTicks) {
    grid.append(svgEl('line', {x1: tick.at, x2: tick.at, y1: plot.bottom, y2: plot.bottom + 4}));
    const text = svgEl('text', {x: tick.at, y: plot.bottom + 15, 'text-anchor': 'middle'});
    text.textContent = tick.label;
    grid.append(text);
  }
  for (const tick of layout.yTicks) {
    grid.append(svgEl('line', {x1: plot.right, x2: plot.right + 4, y1: tick.at, y2: tick.at}));
    const text = svgEl('text', {x: plot.right + 7, y: tick.at + 3});
    text.textContent = tick.label;
    grid.append(text);
  }
  const axisTitle = svgEl('text', {x: plot.right + 7, y: plot.top - 8, class: 'axis-title'});
  axisTitle.textContent = layout.yAxisTitle;
  grid.append(axisTitle);

  const ridges = svgEl('g', {class: 'ridges'});
  for (const ridge of layout.ridges) {
    const color = ridgeColor(ridge.lane, ridge.shade);
    const path = svgEl('path', {d: ridge.path, class: 'ridge'});
    if (mode === 'offset') {
      path.setAttribute('fill', color);
      path.setAttribute('stroke', '#fff');
    } else {
      path.setAttribute('fill', 'none');
      path.setAttribute('stroke', color);
    }
    const tip = svgEl('title', {});
    tip.textContent = `step ${ridge.step} · lane ${ridge.lane}`;
    path.append(tip);
    ridges.append(path);
  }
  svg.append(grid, ridges);
  return svg;
}
