// DOM builders for the VarScope tab. Text goes in through textContent and attributes only:
// run, tag and variable names come from files on disk and may contain markup.

import {baseName, formatShape, laneText, plural, stepRange, tabEvidence, visible} from './format.js';
import {cleanText, summaryText} from './overview.js';
import {laneHue} from './chart.js';

/**
 * @typedef {import('./overview.js').Report} Report
 * @typedef {import('./overview.js').RunCollision} RunCollision
 * @typedef {import('./overview.js').RunWarning} RunWarning
 * @typedef {import('./overview.js').Lane} Lane
 * @typedef {{run: string, tag: string, lane: ?number}} HistogramTarget
 * @typedef {{root: !HTMLElement, summary: !HTMLElement, status: !HTMLElement,
 *            reload: !HTMLButtonElement, banner: !HTMLElement, sidebar: !HTMLElement,
 *            main: !HTMLElement, layout: !HTMLElement, warnings: !HTMLButtonElement,
 *            warningsPanel: !HTMLElement}} Shell
 * @typedef {{element: !HTMLElement, input: !HTMLInputElement, message: !HTMLElement,
 *            colliding: !HTMLInputElement}} TreePanel
 * @typedef {{element: !HTMLElement, input: !HTMLInputElement, message: !HTMLElement,
 *            list: !HTMLElement}} RunPanel
 * @typedef {{view: string, mode: string, time: string, range: string}} ChartSettings
 */

/** Collision cards shown at first and added per "show more". */
export const PAGE_CARDS = 20;

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
    element.textContent = visible(options.text);
  }
  if (options.title) {
    element.setAttribute('title', options.title.split('\n').map(visible).join('\n'));
  }
  element.append(...children);
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
 * The page frame: a header with the summary, the warning count and Reload, a panel listing the warnings, an error
 * banner, the sidebar (runs and tree) and the main area for the overview or the histograms.
 * @param {function(): void} onReload
 * @return {Shell}
 */
export function createShell(onReload) {
  const summary = el('div', {className: 'summary', testid: 'summary'});
  const status = el('span', {className: 'status'});
  const reload = button('Reload', onReload, {className: 'reload', testid: 'reload',
    title: 'Read the logdir again (the report also refreshes every 30 s)'});
  const warningsPanel = el('section', {className: 'warnings-panel', testid: 'warnings-panel'});
  warningsPanel.id = 'varscope-warnings-panel';
  warningsPanel.hidden = true;
  const warnings = /** @type {!HTMLButtonElement} */ (button('', () => {
    warningsPanel.hidden = !warningsPanel.hidden;
    warnings.setAttribute('aria-expanded', String(!warningsPanel.hidden));
  }, {className: 'header-warnings', testid: 'header-warnings'}));
  warnings.hidden = true;
  warnings.setAttribute('aria-expanded', 'false');
  warnings.setAttribute('aria-controls', warningsPanel.id);
  const header = el('header', {className: 'header'}, [
    el('h1', {text: 'VarScope'}),
    summary,
    el('div', {className: 'header-actions'}, [warnings, status, reload]),
  ]);
  const banner = el('div', {className: 'banner'});
  const sidebar = el('aside', {className: 'sidebar'});
  const main = el('main', {className: 'main'});
  const layout = el('div', {className: 'layout'}, [sidebar, main]);
  const root = el('div', {className: 'varscope'}, [header, warningsPanel, banner, layout]);
  return {root, summary, status, reload: /** @type {!HTMLButtonElement} */ (reload), banner, sidebar, main, layout,
    warnings, warningsPanel};
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
 * Fills the header: the summary line, and the warning count with the list it opens (file, offset, message each).
 * @param {Shell} shell
 * @param {Report} report
 * @param {!Array<RunWarning>} warnings output of warningList
 */
export function showSummary(shell, report, warnings) {
  shell.summary.textContent = summaryText(report);
  shell.summary.classList.toggle('has-collisions', report.summary.collisions > 0);
  shell.summary.setAttribute('title', visible(`logdir: ${report.logdir}`));
  shell.warnings.hidden = warnings.length === 0;
  shell.warnings.textContent = `⚠ ${plural(warnings.length, 'warning')}`;
  shell.warnings.setAttribute('title', warnings.map(warningWhere).join('\n'));
  shell.warningsPanel.replaceChildren(createWarnings(warnings));
  if (warnings.length === 0) {
    shell.warningsPanel.hidden = true;
  }
}

/**
 * "run · file @ byte 4096" (a logdir warning names its directory only).
 * @param {RunWarning} warning
 * @return {string}
 */
function warningWhere(warning) {
  return visible(warning.run ? `${warning.run} · ${warning.file} @ byte ${warning.offset}` : warning.file);
}

/**
 * The overview: the warnings first (they say what could not be read), then every collision worst first, a page
 * at a time (or a plain "no collisions" line).
 * @param {Report} report
 * @param {!Array<RunCollision>} collisions output of collisionList
 * @param {!Array<RunWarning>} warnings output of warningList
 * @param {function(HistogramTarget): void} onOpen
 * @return {!HTMLElement}
 */
export function createOverview(report, collisions, warnings, onOpen) {
  const section = el('section', {className: 'overview', testid: 'overview'});
  if (warnings.length > 0) {
    section.append(createWarnings(warnings));
  }
  if (collisions.length === 0) {
    section.append(el('p', {className: 'clean', testid: 'no-collisions', text: cleanText(report)}),
      el('p', {className: 'hint', text: 'Browse the histograms by variable in the tree.'}));
    return section;
  }
  const byRun = new Map();
  for (const warning of warnings) {
    byRun.set(warning.run, [...(byRun.get(warning.run) || []), warning]);
  }
  const list = el('div', {className: 'cards'});
  let shown = 0;
  const more = button('', () => showMore(), {className: 'more', testid: 'cards-more'});
  const showMore = () => {
    const page = collisions.slice(shown, shown + PAGE_CARDS);
    list.append(...page.map((item) => createCollisionCard(item, byRun.get(item.run) || [], onOpen)));
    shown += page.length;
    more.hidden = shown >= collisions.length;
    const left = collisions.length - shown;
    more.textContent = `Show ${Math.min(PAGE_CARDS, left)} more (${left} not shown)`;
  };
  section.append(el('h2', {text: `${plural(collisions.length, 'colliding tag')}, worst first`}), list, more);
  showMore();
  return section;
}

/**
 * One collision: run, tag, kind, writers, steps, the variable behind each lane, why and the fix, and what could
 * not be read in its run. Clicking the card opens its histograms.
 * @param {RunCollision} item
 * @param {!Array<RunWarning>} warnings the warnings of the card's run
 * @param {function(HistogramTarget): void} onOpen
 * @return {!HTMLElement}
 */
export function createCollisionCard(item, warnings, onOpen) {
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
    fact('Checkpoint', checkpoint ? `${baseName(checkpoint.path)} (${checkpoint.format})` :
      'none found: start TensorBoard with --varscope_checkpoint PATH to name the variables');
  }

  const lanes = el('ol', {className: 'lanes'});
  for (const lane of collision.lanes) {
    lanes.append(createLaneRow(lane));
  }
  card.append(title);
  if (warnings.length > 0) {
    card.append(createRunWarnings(warnings, 'card-warnings'));
  }
  card.append(facts);
  if (collision.lanes.length > 0) {
    card.append(lanes);
  }
  card.append(
    el('p', {className: 'explanation', text: collision.explanation}),
    el('p', {className: 'fix'}, [el('strong', {text: 'Fix: '}), el('span', {text: collision.fix})]),
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
 * The warnings of one run, where its cards and its lanes view show them.
 * @param {!Array<RunWarning>} warnings
 * @param {string} testid
 * @return {!HTMLElement}
 */
export function createRunWarnings(warnings, testid) {
  const box = el('div', {className: 'run-warnings', testid}, [
    el('strong', {text: `⚠ ${plural(warnings.length, 'warning')} in run ${warnings[0].run}: ` +
      'these histograms may miss what could not be read'}),
  ]);
  box.setAttribute('role', 'note');
  const list = el('ul', {});
  for (const warning of warnings) {
    list.append(el('li', {}, [
      el('span', {className: 'warning-where', text: `${warning.file} @ byte ${warning.offset}`}),
      el('span', {className: 'warning-message', text: warning.message}),
    ]));
  }
  box.append(list);
  return box;
}

/**
 * A swatch in a lane's colour.
 * @param {number} lane
 * @return {!HTMLElement}
 */
function swatch(lane) {
  const element = el('span', {className: 'swatch'});
  element.style.setProperty('--hue', String(laneHue(lane)));
  return element;
}

/**
 * @param {Lane} lane
 * @return {!HTMLElement}
 */
function createLaneRow(lane) {
  const evidence = tabEvidence(lane.evidence);
  const row = el('li', {className: 'lane', testid: 'lane', title: evidence});
  row.setAttribute('data-lane', String(lane.lane));
  const name = el('span', {className: lane.variable === null ? 'lane-name unattributed' : 'lane-name',
    text: laneText(lane)});
  const details = [formatShape(lane.shape), plural(lane.elements, 'element'), lane.checkpoint_key || '']
    .filter((part) => part !== '')
    .join(' · ');
  row.append(swatch(lane.lane), name, el('span', {className: 'lane-details', text: details}),
    el('div', {className: 'evidence', text: evidence}));
  return row;
}

/**
 * Damaged event files: run, file, byte offset and message per warning.
 * @param {!Array<RunWarning>} warnings
 * @return {!HTMLElement}
 */
export function createWarnings(warnings) {
  const list = el('ul', {className: 'warning-list'});
  for (const warning of warnings) {
    const item = el('li', {className: 'warning', testid: 'warning'}, [
      el('span', {className: 'warning-where', text: warningWhere(warning)}),
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
 * The runs panel, like TensorBoard's run selector: a regex filter and a checkbox per run.
 * @param {function(string): void} onFilter called with the regex text on every edit
 * @param {function(string, boolean): void} onCheck a run's box was (un)checked
 * @param {function(boolean): void} onAll every matching run's box set at once
 * @return {RunPanel}
 */
export function createRunPanel(onFilter, onCheck, onAll) {
  const input = /** @type {!HTMLInputElement} */ (el('input', {className: 'filter', testid: 'run-filter'}));
  input.type = 'search';
  input.placeholder = 'Filter runs (regex)';
  input.setAttribute('aria-label', 'Filter runs (regular expression)');
  input.spellcheck = false;
  input.addEventListener('input', () => onFilter(input.value));
  const message = el('div', {className: 'filter-message', testid: 'run-filter-message'});
  message.setAttribute('aria-live', 'polite');
  const list = el('ul', {className: 'run-list', testid: 'run-list'});
  list.addEventListener('change', (event) => {
    const box = /** @type {!HTMLInputElement} */ (event.target);
    onCheck(box.value, box.checked);
  });
  const all = button('All', () => onAll(true), {className: 'small', testid: 'runs-all',
    title: 'Show every run the filter matches'});
  const none = button('None', () => onAll(false), {className: 'small', testid: 'runs-none',
    title: 'Hide every run the filter matches'});
  const element = el('section', {className: 'run-panel panel'}, [
    el('div', {className: 'panel-head'}, [el('h2', {text: 'Runs'}), all, none]), input, message, list,
  ]);
  return {element, input, message, list};
}

/**
 * Lists the runs with their boxes (checked unless hidden), greyed when the regex leaves them out.
 * @param {RunPanel} panel
 * @param {!Array<{run: string, matches: boolean, checked: boolean, collisions: number, warnings: number}>} runs
 * @param {?string} error an invalid regex
 */
export function showRuns(panel, runs, error) {
  panel.input.classList.toggle('invalid', error !== null);
  panel.input.setAttribute('aria-invalid', String(error !== null));
  panel.message.textContent = error !== null ? `${error}. Showing every run.` : '';
  panel.message.classList.toggle('invalid', error !== null);
  panel.list.replaceChildren(...runs.map((item) => {
    const box = /** @type {!HTMLInputElement} */ (el('input', {testid: 'run-checkbox'}));
    box.type = 'checkbox';
    box.value = item.run;
    box.checked = item.checked;
    box.disabled = !item.matches;
    const extras = [];
    if (item.collisions > 0) {
      extras.push(el('span', {className: 'badge', text: `⚠ ${item.collisions}`,
        title: plural(item.collisions, 'colliding tag')}));
    }
    if (item.warnings > 0) {
      extras.push(el('span', {className: 'badge warning-badge', testid: 'run-warnings',
        text: plural(item.warnings, 'warning')}));
    }
    const label = el('label', {className: item.matches ? 'run-item' : 'run-item excluded'},
      [box, el('span', {className: 'run-label', text: item.run}), ...extras]);
    const row = el('li', {}, [label]);
    row.setAttribute('data-run', item.run);
    return row;
  }));
}

/**
 * The tree panel: a regex filter (like TensorBoard's tag filter), the "colliding only" switch and fold buttons
 * above the tree.
 * @param {!HTMLElement} tree the TreeView's element
 * @param {!HTMLElement} more its "show more" button
 * @param {!HTMLElement} empty its empty-state line
 * @param {{onFilter: function(string): void, onColliding: function(boolean): void,
 *          onFold: function(boolean): void}} handlers
 * @return {TreePanel}
 */
export function createTreePanel(tree, more, empty, handlers) {
  const input = /** @type {!HTMLInputElement} */ (el('input', {className: 'filter', testid: 'tree-filter'}));
  input.type = 'search';
  input.placeholder = 'Filter tags and variables (regex)';
  input.setAttribute('aria-label', 'Filter tags and variables (regular expression)');
  input.spellcheck = false;
  input.addEventListener('input', () => handlers.onFilter(input.value));
  const colliding = /** @type {!HTMLInputElement} */ (el('input', {testid: 'colliding-only'}));
  colliding.type = 'checkbox';
  colliding.addEventListener('change', () => handlers.onColliding(colliding.checked));
  const message = el('div', {className: 'filter-message', testid: 'tree-filter-message'});
  message.setAttribute('aria-live', 'polite');
  const element = el('section', {className: 'tree-panel panel'}, [
    el('div', {className: 'panel-head'}, [
      el('h2', {text: 'Histograms by variable'}),
      button('Expand all', () => handlers.onFold(true), {className: 'small', testid: 'expand-all'}),
      button('Collapse all', () => handlers.onFold(false), {className: 'small', testid: 'collapse-all'}),
    ]),
    input,
    el('label', {className: 'switch'}, [colliding, el('span', {text: 'Colliding tags only'})]),
    message, tree, empty, more,
  ]);
  return {element, input, message, colliding};
}

/**
 * Shows the filter state under the input: an invalid regex is an error and filters nothing.
 * @param {TreePanel} panel
 * @param {?string} error
 * @param {number} shown histogram tags shown
 * @param {number} total histogram tags in the runs shown, counted as the header counts them
 */
export function showFilterState(panel, error, shown, total) {
  panel.input.classList.toggle('invalid', error !== null);
  panel.input.setAttribute('aria-invalid', String(error !== null));
  panel.message.classList.toggle('invalid', error !== null);
  panel.message.setAttribute('data-testid', error !== null ? 'tree-filter-error' : 'tree-filter-message');
  if (error !== null) {
    panel.message.textContent = `${error}. Showing everything.`;
  } else {
    panel.message.textContent = shown === total ? plural(total, 'histogram tag') :
      `${shown} of ${plural(total, 'histogram tag')} shown`;
  }
}

/**
 * A group of toggle buttons, one pressed.
 * @param {string} label accessible name of the group
 * @param {string} testid
 * @param {!Array<!Array<string>>} choices [value, text, tooltip]
 * @param {string} current
 * @param {function(string): void} onChoose
 * @return {!HTMLElement}
 */
function toggleGroup(label, testid, choices, current, onChoose) {
  const group = el('div', {className: 'toggle', testid});
  group.setAttribute('role', 'group');
  group.setAttribute('aria-label', label);
  for (const [value, text, tip] of choices) {
    const choice = button(text, () => onChoose(value), {testid: `${testid}-${value}`,
      className: value === current ? 'active' : '', title: tip});
    choice.setAttribute('aria-pressed', String(value === current));
    group.append(choice);
  }
  return group;
}

/**
 * The histograms screen's frame: back link, title, the chart settings (histograms or distributions, offset or
 * overlay, time axis, shared or per-lane range), the run's warnings, an explanation slot and the chart grid.
 * @param {HistogramTarget} target
 * @param {ChartSettings} settings
 * @param {{onBack: function(): void, onSetting: function(string, string): void}} handlers
 * @return {{element: !HTMLElement, note: !HTMLElement, charts: !HTMLElement, warnings: !HTMLElement}}
 */
export function createHistogramsView(target, settings, handlers) {
  const controls = el('div', {className: 'chart-controls'}, [
    toggleGroup('View', 'view', [['histograms', 'Histograms', 'Each step as a histogram, as the Histograms tab'],
      ['distributions', 'Distributions', 'Percentile bands over steps, as the Distributions tab']],
    settings.view, (value) => handlers.onSetting('view', value)),
    toggleGroup('Histogram mode', 'mode', [['offset', 'Offset', 'One ridge per step, later steps in front'],
      ['overlay', 'Overlay', 'All steps on one baseline']], settings.mode,
    (value) => handlers.onSetting('mode', value)),
    toggleGroup('Time axis', 'time', [['step', 'Step', 'Steps on the time axis'],
      ['relative', 'Relative', 'Time since the first value'], ['wall', 'Wall', 'Clock time']], settings.time,
    (value) => handlers.onSetting('time', value)),
    toggleGroup('Value range', 'range', [['shared', 'Same range', 'Every lane on one value range, to compare by eye'],
      ['lane', 'Per lane', 'Each lane on its own value range']], settings.range,
    (value) => handlers.onSetting('range', value)),
  ]);
  if (settings.view === 'distributions') {
    controls.querySelectorAll('[data-testid=mode] button').forEach((choice) => {
      /** @type {!HTMLButtonElement} */ (choice).disabled = true;
    });
  }
  const title = el('h2', {className: 'histograms-title'}, [
    el('span', {className: 'tag-name', text: target.tag}),
    el('span', {className: 'run-name', text: `run ${target.run}`}),
  ]);
  const note = el('div', {className: 'note'});
  const warnings = el('div', {className: 'view-warnings'});
  const charts = el('div', {className: `charts view-${settings.view}`});
  const element = el('section', {className: 'histograms', testid: 'histograms'}, [
    el('div', {className: 'histograms-bar'}, [
      button('← Overview', handlers.onBack, {className: 'back', testid: 'back'}),
      title,
    ]),
    controls,
    warnings,
    note,
    charts,
  ]);
  element.setAttribute('data-run', target.run);
  element.setAttribute('data-tag', target.tag);
  element.setAttribute('data-view', settings.view);
  return {element, note, charts, warnings};
}

/**
 * A figure holding one chart (or its loading/error state) with a caption and an enlarge button.
 * @param {{testid: string, lane: ?number, title: string, subtitle: string, accent: boolean}} options
 * @param {function(!HTMLElement): void} onResize called after the figure was enlarged or shrunk
 * @return {{figure: !HTMLElement, slot: !HTMLElement}}
 */
export function createChartFigure(options, onResize) {
  const figure = el('figure', {className: options.accent ? 'chart-card tensorboard-view' : 'chart-card',
    testid: options.testid});
  if (options.lane !== null) {
    figure.setAttribute('data-lane', String(options.lane));
  }
  const caption = el('figcaption', {}, [el('span', {className: 'chart-title', text: options.title})]);
  if (options.lane !== null) {
    caption.prepend(swatch(options.lane));
  }
  const enlarge = button('⤢', () => {
    const big = figure.classList.toggle('enlarged');
    enlarge.setAttribute('aria-pressed', String(big));
    enlarge.setAttribute('aria-label', big ? 'Shrink this chart' : 'Enlarge this chart');
    onResize(figure);
  }, {className: 'enlarge', testid: 'enlarge', title: 'Enlarge or shrink this chart'});
  enlarge.setAttribute('aria-pressed', 'false');
  enlarge.setAttribute('aria-label', 'Enlarge this chart');
  caption.append(enlarge, el('span', {className: 'chart-subtitle', text: options.subtitle,
    title: options.subtitle}));
  const slot = el('div', {className: 'chart-slot'});
  figure.append(caption, slot);
  return {figure, slot};
}
