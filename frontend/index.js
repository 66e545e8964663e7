// Entry point TensorBoard imports into the VarScope tab's iframe: wires the model to the views.

import * as Model from './model.js';
import * as Views from './views.js';
import {collisionList, findCollision, laneCount, runMatches, runWarnings, selectRuns, warningList}
  from './overview.js';
import {buildTree, collidingOnly, compileFilter, countTags, filterTree, pathTo, visibleRows}
  from './tree.js';
import {lastWriterSeries, normalizeSeries, stepsShownByLane} from './histogram.js';
import {layoutDistribution, layoutHistogram, sharedDistributionDomain, sharedDomain} from './chart.js';
import {compressSeries} from './distribution.js';
import {drawDistribution, drawHistogram} from './chartview.js';
import {PAGE_ROWS, TreeView} from './treeview.js';
import {followTheme} from './theme.js';
import {hashWindow, parseHash, readState, saveState} from './urlstate.js';
import {laneText, plural, tabEvidence} from './format.js';

/**
 * @typedef {import('./overview.js').Report} Report
 * @typedef {import('./views.js').HistogramTarget} HistogramTarget
 * @typedef {import('./histogram.js').HistogramStep} HistogramStep
 * @typedef {import('./distribution.js').CompressedStep} CompressedStep
 * @typedef {import('./urlstate.js').ViewState} ViewState
 * @typedef {import('./tree.js').TreeNode} TreeNode
 * @typedef {{lane: number, name: string, title: string, subtitle: string,
 *            series: ?Array<HistogramStep>, error: ?string}} LaneData
 * @typedef {{testid: string, lane: ?number, title: string, subtitle: string, accent: boolean,
 *            series: ?Array<HistogramStep>, error: ?string}} FigureSpec
 */

const REFRESH_MS = 30000;
// While the plugin is still on its first pass over the logdir, the report is fetched again this often.
const READING_MS = 1000;
// A filter is applied this long after the last keystroke: typing `block_12/` filters once, not nine times.
const FILTER_DEBOUNCE_MS = 60;
const CHART_HEIGHT = 280;
const ENLARGED_HEIGHT = 480;

/**
 * Builds the tab inside TensorBoard's iframe and keeps it current.
 * @return {!Promise<void>}
 */
export async function render() {
  const stylesheet = document.createElement('link');
  stylesheet.rel = 'stylesheet';
  stylesheet.href = new URL('style.css', import.meta.url).href;
  document.head.append(stylesheet);
  followTheme(window);

  const app = new App(hashWindow(window));
  document.body.append(app.shell.root);
  setInterval(() => app.loadReport(), REFRESH_MS);
  await app.loadReport();
}

/** The tab's state: the last report, the view (mirrored in the URL), the tree and the open histograms. */
class App {
  /**
   * @param {!Window} hashHost the window whose location hash holds the view (TensorBoard's page)
   */
  constructor(hashHost) {
    this.hashHost = hashHost;
    /** @type {ViewState} */
    this.state = readState(parseHash(hashHost.location.hash));
    this.shell = Views.createShell(() => this.reload());
    this.runs = Views.createRunPanel(
      (text) => this.update({runFilter: text}, false),
      (run, checked) => this.update({hiddenRuns: checked ? this.state.hiddenRuns.filter((r) => r !== run) :
        [...this.state.hiddenRuns, run]}, true),
      (checked) => this.checkAllRuns(checked),
    );
    this.treeView = new TreeView({
      onOpen: (target) => this.openHistograms(target),
      onToggle: (node, open) => {
        this.folds.set(node.id, open);
        this.showTree();
      },
    });
    this.tree = Views.createTreePanel(this.treeView.element, this.treeView.more, this.treeView.empty, {
      onFilter: (text) => this.update({filter: text}, false),
      onColliding: (on) => this.update({colliding: on}, true),
      onFold: (open) => {
        this.folds = new Map();
        this.foldDefault = open;
        this.showTree();
      },
    });
    this.runs.input.value = this.state.runFilter;
    this.tree.input.value = this.state.filter;
    this.shell.sidebar.append(this.runs.element, this.tree.element);
    /** @type {?Report} */
    this.report = null;
    this.reportText = '';
    /** @type {!Array<TreeNode>} */
    this.trees = [];
    this.tagTotal = 0;
    /** @type {!Map<string, boolean>} folds the user made, by node id */
    this.folds = new Map();
    /** @type {?boolean} set by expand all / collapse all; null: runs open, the rest closed */
    this.foldDefault = null;
    /** @type {?HistogramTarget} */
    this.target = null;
    /** @type {?Array<LaneData>} */
    this.lanes = null;
    /** @type {?AbortController} */
    this.histogramRequest = null;
    this.reportPending = false;
    /** @type {?number} */
    this.filterTimer = null;
    /** @type {!Array<{slot: !HTMLElement, spec: FigureSpec}>} the figures on screen, redrawn on resize */
    this.figures = [];
    /** @type {!Map<string, !Array<CompressedStep>>} percentiles of the open tag's lanes, by lane */
    this.compressed = new Map();
    this.chartWidth = 0;
    new ResizeObserver(() => this.onResize()).observe(this.shell.main);
    // Back/forward and edits of the URL: TensorBoard's page changes its hash, the view follows.
    hashHost.addEventListener('hashchange', () => this.followUrl());
  }

  /**
   * Changes part of the view, records it in the URL (a new history entry when `push`) and redraws what it
   * touches.
   * @param {!Object} changes fields of ViewState
   * @param {boolean} push
   */
  update(changes, push) {
    const before = this.state;
    this.state = {...this.state, ...changes};
    saveState(this.hashHost, this.state, push);
    this.applyState(before);
  }

  /** The URL changed under the tab (back, forward, a pasted link): show what it says. */
  followUrl() {
    const before = this.state;
    this.state = readState(parseHash(this.hashHost.location.hash));
    this.runs.input.value = this.state.runFilter;
    this.tree.input.value = this.state.filter;
    this.applyState(before);
  }

  /**
   * Redraws what differs between `before` and the current state.
   * @param {ViewState} before
   */
  applyState(before) {
    if (!this.report) {
      return;
    }
    const state = this.state;
    const runsChanged = before.runFilter !== state.runFilter || before.hiddenRuns.join('\n') !==
      state.hiddenRuns.join('\n');
    if (runsChanged) {
      this.showRuns();
    }
    const targetChanged = before.run !== state.run || before.tag !== state.tag || before.lane !== state.lane;
    if (targetChanged) {
      this.showTarget();
    } else if (this.target && this.lanes && (before.view !== state.view || before.mode !== state.mode ||
        before.time !== state.time || before.range !== state.range)) {
      this.showHistograms();
    } else if (!this.target && runsChanged) {
      this.showOverview();
    }
    if (before.filter !== state.filter) {
      this.scheduleTree();
    } else if (runsChanged || targetChanged || before.colliding !== state.colliding) {
      this.showTree({reveal: targetChanged});
    }
  }

  /** Opens what the state names: a tag's lanes, or the overview. */
  showTarget() {
    const {run, tag, lane} = this.state;
    if (run !== null && tag !== null) {
      this.loadHistograms({run, tag, lane});
    } else {
      this.showOverview();
    }
  }

  /**
   * @param {boolean} checked
   */
  checkAllRuns(checked) {
    const regex = compileFilter(this.state.runFilter).regex;
    const matching = (this.report?.runs || []).map((r) => r.run).filter((run) => runMatches(run, regex));
    const hidden = new Set(this.state.hiddenRuns);
    for (const run of matching) {
      if (checked) {
        hidden.delete(run);
      } else {
        hidden.add(run);
      }
    }
    this.update({hiddenRuns: [...hidden]}, true);
  }

  /** Reload: the report and, when a tag is open, its histograms. */
  async reload() {
    await this.loadReport();
    if (this.target) {
      await this.loadHistograms(this.target);
    }
  }

  /**
   * Fetches the report; redraws only when it changed, so a refresh keeps scroll, folds and filter.
   * A failed refresh keeps the last good report on screen under an error banner.
   */
  async loadReport() {
    if (this.reportPending) {
      return;
    }
    this.reportPending = true;
    const firstLoad = this.report === null;
    if (firstLoad) {
      this.shell.main.replaceChildren(Views.createLoading('Reading the logdir…'));
    }
    this.shell.reload.disabled = true;
    try {
      const {text, report} = await Model.fetchReport();
      this.shell.banner.replaceChildren();
      const reading = report.complete === false;
      this.shell.status.textContent = reading ? 'reading event files…' :
        `updated ${new Date().toLocaleTimeString()}`;
      if (reading) {
        setTimeout(() => this.loadReport(), READING_MS);
      }
      if (text !== this.reportText) {
        this.report = report;
        this.reportText = text;
        this.trees = buildTree(report);
        this.tagTotal = countTags(this.trees);
        Views.showSummary(this.shell, report, warningList(report));
        this.showRuns();
        if (firstLoad && this.state.run !== null && this.state.tag !== null) {
          this.showTarget();
          this.showTree({reveal: true});
        } else {
          this.showTree();
          if (!this.target) {
            this.showOverview();
          }
        }
      }
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      const failure = Views.createError('Could not load the VarScope report.', message);
      if (firstLoad) {
        this.shell.summary.textContent = 'Report unavailable';
        this.shell.main.replaceChildren(failure);
      } else {
        this.shell.banner.replaceChildren(failure);
      }
    } finally {
      this.reportPending = false;
      this.shell.reload.disabled = false;
    }
  }

  /** The report as the run selector restricts it. */
  shownReport() {
    const report = /** @type {!Report} */ (this.report);
    return selectRuns(report, compileFilter(this.state.runFilter).regex, new Set(this.state.hiddenRuns));
  }

  showRuns() {
    const report = /** @type {!Report} */ (this.report);
    const filter = compileFilter(this.state.runFilter);
    const hidden = new Set(this.state.hiddenRuns);
    Views.showRuns(this.runs, report.runs.map((run) => ({
      run: run.run,
      matches: runMatches(run.run, filter.regex),
      checked: !hidden.has(run.run),
      collisions: run.collisions.length,
      warnings: run.warnings.length,
    })), filter.error);
  }

  /** Back to the overview, recorded in the URL. */
  goToOverview() {
    this.update({run: null, tag: null, lane: null}, true);
  }

  showOverview() {
    this.target = null;
    this.lanes = null;
    this.figures = [];
    this.histogramRequest?.abort();
    this.shell.layout.classList.remove('has-target');
    const report = this.shownReport();
    if (report.complete === false && collisionList(report).length === 0) {
      // Nothing found yet is not "nothing collides": the first pass over the logdir is still going.
      this.shell.main.replaceChildren(Views.createLoading('Reading the logdir…'));
      return;
    }
    this.shell.main.replaceChildren(Views.createOverview(report, collisionList(report), warningList(report),
      (target) => this.openHistograms(target)));
  }

  /** Applies the tree filter once typing pauses. */
  scheduleTree() {
    if (this.filterTimer !== null) {
      clearTimeout(this.filterTimer);
    }
    this.filterTimer = setTimeout(() => {
      this.filterTimer = null;
      this.showTree();
    }, FILTER_DEBOUNCE_MS);
  }

  /**
   * Shows the tree of the selected runs, filtered, folded as the user left it.
   * @param {{reveal: boolean}=} options reveal: unfold and scroll to the open tag
   */
  showTree(options = {reveal: false}) {
    if (!this.report) {
      return;
    }
    const shownRuns = new Set(this.shownReport().runs.map((run) => run.run));
    const trees = this.trees.filter((root) => shownRuns.has(root.run));
    const filter = compileFilter(this.state.filter);
    const colliding = this.state.colliding ?? this.report.summary.collisions > 0;
    this.tree.colliding.checked = colliding;
    let shown = filterTree(trees, filter.regex);
    if (colliding) {
      // A run with warnings keeps its node, and its warning count, even with nothing colliding in it.
      const kept = collidingOnly(shown);
      const keptRuns = new Set(kept.map((root) => root.run));
      const warned = shown.filter((root) => !keptRuns.has(root.run) &&
        this.report?.runs.some((run) => run.run === root.run && run.warnings.length > 0));
      shown = [...kept, ...warned.map((root) => ({...root, children: []}))];
    }
    const target = this.target;
    if (options.reveal && target) {
      for (const id of pathTo(shown, (node) => node.run === target.run && node.tag === target.tag)) {
        this.folds.set(id, true);
      }
    }
    const filtering = filter.regex !== null;
    // Unfolded by default while everything fits on a page of rows; past that, runs open and the rest folded.
    const everything = visibleRows(shown, (node) => this.folds.get(node.id) ?? this.foldDefault ?? true);
    const small = everything.length <= PAGE_ROWS;
    const rows = small && this.foldDefault !== false ? everything : visibleRows(shown, (node, depth) =>
      this.folds.get(node.id) ?? this.foldDefault ?? (depth === 0 || filtering || colliding));
    Views.showFilterState(this.tree, filter.error, countTags(shown), this.tagTotal);
    const focused = this.treeView.hasFocus();
    const warnings = new Map(this.report.runs.map((run) => [run.run, run.warnings.length]));
    this.treeView.render(rows, {selected: target, warnings,
      empty: filtering ? 'Nothing matches the filter.' : colliding ? 'No colliding tags in the runs shown.' :
        'No runs yet.'}, options);
    if (focused) {
      this.treeView.restoreFocus();
    }
    // Which filter the rows on screen answer: the benchmark waits on it to time a keystroke to its painted tree.
    this.treeView.element.setAttribute('data-filter', this.state.filter);
  }

  /**
   * A click on a card or a leaf: opens a tag's lanes, recorded in the URL as a new history entry.
   * @param {HistogramTarget} target
   */
  openHistograms(target) {
    this.update({run: target.run, tag: target.tag, lane: target.lane}, true);
  }

  /**
   * Loads the histograms of a tag: every lane of a colliding tag beside what TensorBoard shows, or the single
   * series of a clean tag.
   * @param {HistogramTarget} target
   */
  async loadHistograms(target) {
    this.histogramRequest?.abort();
    const request = new AbortController();
    this.histogramRequest = request;
    this.target = target;
    this.lanes = null;
    this.figures = [];
    this.shell.layout.classList.add('has-target');
    const report = /** @type {!Report} */ (this.report);
    const collision = findCollision(report, target.run, target.tag);
    const lanes = collision ? collisionLanes(collision) : [cleanLane(report, target)];
    this.shell.main.replaceChildren(Views.createLoading(`Loading ${plural(lanes.length, 'lane')} of ${target.tag}…`));
    window.scrollTo(0, 0);

    const results = await Promise.allSettled(
      lanes.map(({lane}) => Model.fetchHistograms(target.run, target.tag, lane, request.signal)),
    );
    if (request.signal.aborted) {
      return;
    }
    this.lanes = lanes.map((lane, i) => {
      const result = results[i];
      return result.status === 'fulfilled' ?
        {...lane, series: normalizeSeries(result.value, lane.lane), error: null} :
        {...lane, series: null, error: result.reason instanceof Error ? result.reason.message : String(result.reason)};
    });
    this.compressed = new Map();
    this.showHistograms();
  }

  /** Builds the lanes view of the open tag from the loaded lanes and draws its charts. */
  showHistograms() {
    const target = /** @type {!HistogramTarget} */ (this.target);
    const lanes = /** @type {!Array<LaneData>} */ (this.lanes);
    const report = /** @type {!Report} */ (this.report);
    const colliding = findCollision(report, target.run, target.tag) !== null;
    const {view: viewName, mode, time, range} = this.state;
    const view = Views.createHistogramsView(target, {view: viewName, mode, time, range}, {
      onBack: () => this.goToOverview(),
      onSetting: (name, value) => this.update({[name]: value}, true),
    });
    const warnings = runWarnings(report, target.run);
    if (warnings.length > 0) {
      view.warnings.append(Views.createRunWarnings(warnings, 'lanes-warnings'));
    }
    /** @type {!Array<FigureSpec>} */
    const specs = [];
    if (colliding) {
      const loaded = lanes.every((lane) => lane.series !== null);
      const shown = loaded ? lastWriterSeries(lanes.map((lane) => /** @type {!Array<HistogramStep>} */ (lane.series))) :
        null;
      view.note.textContent = shown ? hiddenLanesText(shown, lanes) :
        'What TensorBoard shows needs every lane; see the errors below.';
      specs.push({
        testid: 'tensorboard-view-chart', lane: null, title: 'What TensorBoard shows',
        subtitle: 'the last value written at each step, coloured by the lane that wrote it', accent: true, series: shown,
        error: loaded ? null : `It needs every lane; ${failedLanesText(lanes)}.`,
      });
    } else {
      view.note.textContent = 'One writer per step: TensorBoard shows this tag as it is.';
    }
    for (const lane of lanes) {
      specs.push({testid: 'chart', lane: lane.lane, title: lane.title, subtitle: lane.subtitle, accent: false,
        series: lane.series, error: lane.error});
    }
    this.figures = specs.map((spec) => {
      const {figure, slot} = Views.createChartFigure(spec, () => this.drawFigure(slot, spec));
      if (spec.lane !== null && spec.lane === target.lane) {
        figure.classList.add('selected-lane');
      }
      view.charts.append(figure);
      return {slot, spec};
    });
    this.shell.main.replaceChildren(view.element);
    this.chartWidth = this.shell.main.clientWidth;
    for (const {slot, spec} of this.figures) {
      this.drawFigure(slot, spec);
    }
    if (target.lane !== null) {
      view.charts.querySelector(`[data-testid=chart][data-lane="${target.lane}"]`)?.scrollIntoView({block: 'nearest'});
    }
  }

  /** Redraws the charts at their new width when the window (or the tab's frame) changes size. */
  onResize() {
    const width = this.shell.main.clientWidth;
    if (this.figures.length === 0 || width === this.chartWidth) {
      return;
    }
    this.chartWidth = width;
    for (const {slot, spec} of this.figures) {
      this.drawFigure(slot, spec);
    }
  }

  /**
   * The compressed (percentile) series of a lane, computed once per load.
   * @param {?number} lane null: what TensorBoard shows
   * @param {!Array<HistogramStep>} series
   * @return {!Array<CompressedStep>}
   */
  compressedOf(lane, series) {
    const key = lane === null ? 'shown' : String(lane);
    if (!this.compressed.has(key)) {
      this.compressed.set(key, compressSeries(series));
    }
    return this.compressed.get(key);
  }

  /**
   * Draws one figure at the width its slot has now, on the tag's shared value range unless per-lane was chosen.
   * @param {!HTMLElement} slot
   * @param {FigureSpec} spec
   */
  drawFigure(slot, spec) {
    if (!spec.series) {
      slot.replaceChildren(Views.createError('Could not load these histograms.', spec.error || ''));
      return;
    }
    const lanes = /** @type {!Array<LaneData>} */ (this.lanes);
    const loaded = lanes.filter((lane) => lane.series !== null);
    const enlarged = /** @type {!HTMLElement} */ (slot.parentElement).classList.contains('enlarged');
    const width = Math.max(260, slot.clientWidth || 440);
    const height = enlarged ? ENLARGED_HEIGHT : CHART_HEIGHT;
    const shared = this.state.range === 'shared';
    const names = new Map(lanes.map((lane) => [lane.lane, lane.name]));
    const series = /** @type {!Array<HistogramStep>} */ (spec.series);
    const options = {
      label: `${spec.title}: ${spec.subtitle}`,
      laneName: (lane) => names.get(lane) || '',
      firstWallTime: series.length > 0 ? series[0].wallTime : 0,
    };
    if (this.state.view === 'distributions') {
      const domain = shared ? sharedDistributionDomain(loaded.map((lane) =>
        this.compressedOf(lane.lane, /** @type {!Array<HistogramStep>} */ (lane.series)))) : null;
      const layout = layoutDistribution(this.compressedOf(spec.lane, series),
        {mode: this.state.mode, time: this.state.time, width, height, domain});
      drawDistribution(slot, layout, {...options, lane: spec.lane ?? series[series.length - 1]?.lane ?? 0});
    } else {
      const domain = shared ? sharedDomain(loaded.map((lane) => /** @type {!Array<HistogramStep>} */ (lane.series))) :
        null;
      const layout = layoutHistogram(series, {mode: this.state.mode, time: this.state.time, width, height, domain});
      drawHistogram(slot, layout, options);
    }
  }
}

/**
 * The lanes of a colliding tag with the names the report gives them.
 * @param {import('./overview.js').Collision} collision
 * @return {!Array<LaneData>}
 */
function collisionLanes(collision) {
  if (collision.lanes.length > 0) {
    return collision.lanes.map((lane) => ({
      lane: lane.lane,
      name: lane.variable || 'unattributed',
      title: laneText(lane),
      subtitle: tabEvidence(lane.evidence),
      series: null,
      error: null,
    }));
  }
  return Array.from({length: laneCount(collision)}, (_, lane) => ({
    lane,
    name: collision.files[lane] || `writer ${lane}`,
    title: `lane ${lane} → ${collision.files[lane] || `writer ${lane}`}`,
    subtitle: 'values this writer wrote at the shared steps and its own',
    series: null,
    error: null,
  }));
}

/**
 * The one lane of a clean tag, named after the variable that logs it when the report knows it.
 * @param {Report} report
 * @param {HistogramTarget} target
 * @return {LaneData}
 */
function cleanLane(report, target) {
  const run = report.runs.find((r) => r.run === target.run);
  const variables = run ? run.groups.flatMap((group) => group.variables) : [];
  const variable = variables.find((v) => v.tag === target.tag);
  return {
    lane: 0,
    name: variable ? variable.path : target.tag,
    title: variable ? variable.path : target.tag,
    subtitle: variable ? target.tag : 'no variable matched',
    series: null,
    error: null,
  };
}

/**
 * "At 10 of 10 steps TensorBoard shows lane 2 (sequential/my_layer_2/my_variable1); lanes 0, 1 are
 * hidden at every step."
 * @param {!Array<HistogramStep>} shown
 * @param {!Array<LaneData>} lanes
 * @return {string}
 */
function hiddenLanesText(shown, lanes) {
  const won = stepsShownByLane(shown);
  const parts = [...won.entries()].map(([lane, steps]) => {
    const name = lanes.find((l) => l.lane === lane)?.name || '';
    return `lane ${lane} (${name}) at ${steps} of ${plural(shown.length, 'step')}`;
  });
  const hidden = lanes.map((l) => l.lane).filter((lane) => !won.has(lane));
  const hiddenText = hidden.length === 0 ? '' :
    ` ${hidden.length === 1 ? 'Lane' : 'Lanes'} ${hidden.join(', ')} never ${hidden.length === 1 ? 'shows' : 'show'}.`;
  return `TensorBoard keeps only the last value written at each step, so it shows ${parts.join(', ')}.${hiddenText}`;
}

/**
 * "lane 1 failed to load", "lanes 0, 2 failed to load".
 * @param {!Array<LaneData>} lanes
 * @return {string}
 */
function failedLanesText(lanes) {
  const failed = lanes.filter((lane) => lane.series === null).map((lane) => lane.lane);
  return `${failed.length === 1 ? 'lane' : 'lanes'} ${failed.join(', ')} failed to load`;
}
