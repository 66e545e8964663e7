// Entry point TensorBoard imports into the VarScope tab's iframe: wires the model to the views.

import * as Model from './model.js';
import * as Views from './views.js';
import {collisionList, findCollision, laneCount, warningList} from './overview.js';
import {buildTree, compileFilter, countTagEntries, filterTree} from './tree.js';
import {lastWriterSeries, normalizeSeries, stepsShownByLane} from './histogram.js';
import {layoutChart} from './chart.js';
import {laneText, plural} from './format.js';

/**
 * @typedef {import('./overview.js').Report} Report
 * @typedef {import('./views.js').HistogramTarget} HistogramTarget
 * @typedef {import('./histogram.js').HistogramStep} HistogramStep
 * @typedef {{lane: number, name: string, title: string, subtitle: string,
 *            series: ?Array<HistogramStep>, error: ?string}} LaneData
 */

const REFRESH_MS = 30000;
// While the plugin is still on its first pass over the logdir, the report is fetched again this often.
const READING_MS = 1000;

/**
 * Builds the tab inside TensorBoard's iframe and keeps it current.
 * @return {!Promise<void>}
 */
export async function render() {
  const stylesheet = document.createElement('link');
  stylesheet.rel = 'stylesheet';
  stylesheet.href = new URL('style.css', import.meta.url).href;
  document.head.append(stylesheet);

  const app = new App();
  document.body.append(app.shell.root);
  setInterval(() => app.loadReport(), REFRESH_MS);
  await app.loadReport();
}

/** The tab's state: the last report, the tree's filter and folds, and the open histograms. */
class App {
  constructor() {
    this.shell = Views.createShell(() => this.reload());
    this.tree = Views.createTreePanel((text) => {
      this.filterText = text;
      this.showTree();
    });
    this.shell.sidebar.append(this.tree.element);
    /** @type {?Report} */
    this.report = null;
    this.reportText = '';
    this.filterText = '';
    /** @type {!Set<string>} */
    this.collapsed = new Set();
    /** @type {?HistogramTarget} */
    this.target = null;
    this.mode = 'offset';
    /** @type {?Array<LaneData>} */
    this.lanes = null;
    /** @type {?AbortController} */
    this.histogramRequest = null;
    this.reportPending = false;
  }

  /** Reload: the report and, when a tag is open, its histograms. */
  async reload() {
    await this.loadReport();
    if (this.target) {
      await this.openHistograms(this.target);
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
      const report = await Model.fetchReport();
      this.shell.banner.replaceChildren();
      const reading = report.complete === false;
      this.shell.status.textContent = reading ? 'reading event files…' :
        `updated ${new Date().toLocaleTimeString()}`;
      if (reading) {
        setTimeout(() => this.loadReport(), READING_MS);
      }
      const text = JSON.stringify(report);
      if (text !== this.reportText) {
        this.report = report;
        this.reportText = text;
        Views.showSummary(this.shell.summary, report);
        this.showTree();
        if (!this.target) {
          this.showOverview();
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

  showOverview() {
    this.target = null;
    this.lanes = null;
    this.histogramRequest?.abort();
    const report = /** @type {!Report} */ (this.report);
    if (report.complete === false && collisionList(report).length === 0) {
      // Nothing found yet is not "nothing collides": the first pass over the logdir is still going.
      this.shell.main.replaceChildren(Views.createLoading('Reading the logdir…'));
      return;
    }
    this.shell.main.replaceChildren(Views.createOverview(report, collisionList(report), warningList(report),
      (target) => this.openHistograms(target)));
    this.showTree();
  }

  showTree() {
    if (!this.report) {
      return;
    }
    const filter = compileFilter(this.filterText);
    const trees = buildTree(this.report);
    const shown = filterTree(trees, filter.regex);
    Views.showFilterState(this.tree, filter.error, countTagEntries(shown), countTagEntries(trees));
    Views.renderTree(this.tree.body, shown, {
      collapsed: this.collapsed,
      filtering: filter.regex !== null,
      selected: this.target,
      onOpen: (target) => this.openHistograms(target),
    });
  }

  /**
   * Opens the histograms of a tag: every lane of a colliding tag beside what TensorBoard shows,
   * or the single series of a clean tag.
   * @param {HistogramTarget} target
   */
  async openHistograms(target) {
    this.histogramRequest?.abort();
    const request = new AbortController();
    this.histogramRequest = request;
    this.target = target;
    this.lanes = null;
    this.showTree();
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
    this.showHistograms(collision !== null);
  }

  /**
   * @param {boolean} colliding
   */
  showHistograms(colliding) {
    const target = /** @type {!HistogramTarget} */ (this.target);
    const lanes = /** @type {!Array<LaneData>} */ (this.lanes);
    const view = Views.createHistogramsView(target, this.mode, {
      onBack: () => this.showOverview(),
      onMode: (mode) => {
        this.mode = mode;
        this.showHistograms(colliding);
      },
    });
    const figures = [];
    if (colliding) {
      const loaded = lanes.every((lane) => lane.series !== null);
      const shown = loaded ? lastWriterSeries(lanes.map((lane) => /** @type {!Array<HistogramStep>} */ (lane.series))) : null;
      view.note.textContent = shown ? hiddenLanesText(shown, lanes) :
        'What TensorBoard shows needs every lane; see the errors below.';
      figures.push(this.chartFigure({
        testid: 'tensorboard-view-chart', lane: null, title: 'What TensorBoard shows',
        subtitle: 'the last value written at each step, coloured by the lane that wrote it', accent: true, series: shown,
        error: loaded ? null : `It needs every lane; ${failedLanesText(lanes)}.`,
      }));
    } else {
      view.note.textContent = 'One writer per step: TensorBoard shows this tag as it is.';
    }
    for (const lane of lanes) {
      figures.push(this.chartFigure({testid: 'chart', lane: lane.lane, title: lane.title,
        subtitle: lane.subtitle, accent: false, series: lane.series, error: lane.error}));
    }
    view.charts.append(...figures);
    Views.showMode(view.element, this.mode);
    this.shell.main.replaceChildren(view.element);
  }

  /**
   * @param {{testid: string, lane: ?number, title: string, subtitle: string, accent: boolean,
   *          series: ?Array<HistogramStep>, error: ?string}} options
   * @return {!HTMLElement}
   */
  chartFigure(options) {
    const {figure, slot} = Views.createChartFigure(options);
    if (options.series) {
      slot.append(Views.createChartSvg(layoutChart(options.series, this.mode), this.mode,
        `${options.title}: ${options.subtitle}`));
    } else {
      slot.append(Views.createError('Could not load these histograms.', options.error || ''));
    }
    return figure;
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
      subtitle: lane.evidence,
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
