// What the overview screen says about a report: collisions across runs worst first, warnings, the summary.

import {plural} from './format.js';

/**
 * @typedef {{lane: number, variable: ?string, checkpoint_key: ?string, shape: ?Array<number>,
 *            elements: number, confidence: number, evidence: string}} Lane
 * @typedef {{tag: string, kind: string, writers: number, steps: number, first_step: number,
 *            last_step: number, files: !Array<string>, lanes: !Array<Lane>,
 *            explanation: string, fix: string}} Collision
 * @typedef {{path: string, format: string, variables: number}} Checkpoint
 * @typedef {{name: string, path: string, checkpoint_key: ?string, shape: ?Array<number>,
 *            tag: ?string, lane: ?number}} GroupVariable
 * @typedef {{path: string, tags: !Array<string>, variables: !Array<GroupVariable>}} Group
 * @typedef {{run: string, event_files: number, histogram_tags: number, checkpoint: ?Checkpoint,
 *            warnings: !Array<{file: string, offset: number, message: string}>,
 *            collisions: !Array<Collision>, groups: !Array<Group>}} RunReport
 * @typedef {{schema: string, logdir: string,
 *            summary: {runs: number, histogram_tags: number, collisions: number},
 *            runs: !Array<RunReport>, complete: (boolean|undefined),
 *            warnings: (!Array<{file: string, offset: number, message: string}>|undefined)}} Report
 *   `complete` comes from the plugin's /report: false while its first pass over the logdir goes on.
 * @typedef {{run: string, collision: Collision, checkpoint: ?Checkpoint}} RunCollision
 * @typedef {{run: string, file: string, offset: number, message: string}} RunWarning
 */

/**
 * Orders collisions worst first: more writers per step, then more steps affected; run and tag
 * break ties so the order does not shift between refreshes.
 * @param {RunCollision} a
 * @param {RunCollision} b
 * @return {number}
 */
export function compareCollisions(a, b) {
  return (
    b.collision.writers - a.collision.writers ||
    b.collision.steps - a.collision.steps ||
    compareText(a.run, b.run) ||
    compareText(a.collision.tag, b.collision.tag) ||
    compareText(a.collision.kind, b.collision.kind)
  );
}

/**
 * Every collision of every run, worst first.
 * @param {Report} report
 * @return {!Array<RunCollision>}
 */
export function collisionList(report) {
  const list = [];
  for (const run of report.runs) {
    for (const collision of run.collisions) {
      list.push({run: run.run, collision, checkpoint: run.checkpoint});
    }
  }
  return list.sort(compareCollisions);
}

/**
 * Damaged-file warnings of every run, in report order, then the logdir's own (directories that could not be
 * listed), whose run is ''.
 * @param {Report} report
 * @return {!Array<RunWarning>}
 */
export function warningList(report) {
  const ofRuns = report.runs.flatMap((run) =>
    run.warnings.map((warning) => ({run: run.run, ...warning})),
  );
  return ofRuns.concat((report.warnings || []).map((warning) => ({run: '', ...warning})));
}

/**
 * The one-line summary above the overview: "3 runs · 12 histogram tags · 2 collisions".
 * @param {Report} report
 * @return {string}
 */
export function summaryText(report) {
  const {runs, histogram_tags: tags, collisions} = report.summary;
  return [
    plural(runs, 'run'),
    plural(tags, 'histogram tag'),
    plural(collisions, 'collision'),
  ].join(' · ');
}

/**
 * What the overview says when nothing collides: "No colliding histogram tags in 3 runs (12 tags)".
 * @param {Report} report
 * @return {string}
 */
export function cleanText(report) {
  const {runs, histogram_tags: tags} = report.summary;
  return `No colliding histogram tags in ${plural(runs, 'run')} (${plural(tags, 'tag')})`;
}

/**
 * How many lanes the histograms route serves for a collision: one per same-step lane; for a
 * cross-file collision, one per writing file.
 * @param {Collision} collision
 * @return {number}
 */
export function laneCount(collision) {
  if (collision.lanes.length > 0) {
    return collision.lanes.length;
  }
  return Math.max(1, collision.files.length);
}

/**
 * The collision of a run for a tag, if the tag collides.
 * @param {Report} report
 * @param {string} run
 * @param {string} tag
 * @return {?Collision}
 */
export function findCollision(report, run, tag) {
  const runReport = report.runs.find((r) => r.run === run);
  if (!runReport) {
    return null;
  }
  return runReport.collisions.find((c) => c.tag === tag) || null;
}

/**
 * Code-point order, the same in every locale.
 * @param {string} a
 * @param {string} b
 * @return {number}
 */
function compareText(a, b) {
  if (a < b) {
    return -1;
  }
  return a > b ? 1 : 0;
}

/**
 * The report restricted to the runs the run selector shows: those the regex (case-insensitive, as TensorBoard's
 * run filter) matches and the user did not uncheck. Summary and logdir warnings stay the whole logdir's.
 * @param {Report} report
 * @param {?RegExp} regex null: every run matches
 * @param {!Set<string>} hidden unchecked runs
 * @return {Report}
 */
export function selectRuns(report, regex, hidden) {
  const runs = report.runs.filter((run) => runMatches(run.run, regex) && !hidden.has(run.run));
  return runs.length === report.runs.length ? report : {...report, runs};
}

/**
 * @param {string} run
 * @param {?RegExp} regex
 * @return {boolean}
 */
export function runMatches(run, regex) {
  return regex === null || regex.test(run);
}

/**
 * The warnings of one run.
 * @param {Report} report
 * @param {string} run
 * @return {!Array<RunWarning>}
 */
export function runWarnings(report, run) {
  const found = report.runs.find((r) => r.run === run);
  return found ? found.warnings.map((warning) => ({run, ...warning})) : [];
}
