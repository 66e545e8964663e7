import {test} from 'node:test';
import assert from 'node:assert/strict';

import {
  cleanText, collisionList, findCollision, laneCount, summaryText, warningList,
} from '../../frontend/overview.js';
import {formatShape, formatValue, laneText, stepRange} from '../../frontend/format.js';
import {SEED_TAG, cleanReport, collidingReport} from './report-fixture.mjs';

test('collisions across runs are listed worst first: by writers, then steps affected', () => {
  const list = collisionList(collidingReport());
  assert.deepEqual(
    list.map(({run, collision}) => [run, collision.tag]),
    [['train', SEED_TAG], ['train', 'bias_0/histogram'], ['resumed', 'dense/kernel_0/histogram']],
  );
  assert.equal(list[0].checkpoint.format, 'tf-checkpoint');
});

test('ties on writers and steps keep a stable run/tag order', () => {
  const report = collidingReport();
  const twin = structuredClone(report.runs[1].collisions[0]);
  report.runs.unshift({...report.runs[1], run: 'a-run', collisions: [twin]});
  const list = collisionList(report);
  assert.deepEqual(list.slice(0, 2).map((item) => item.run), ['a-run', 'train']);
});

test('summary line counts runs, histogram tags and collisions', () => {
  assert.equal(summaryText(collidingReport()), '3 runs · 9 histogram tags · 3 collisions');
});

test('a clean logdir is said plainly, with correct plurals', () => {
  assert.equal(cleanText(cleanReport()), 'No colliding histogram tags in 2 runs (5 tags)');
  const one = cleanReport();
  one.summary = {runs: 1, histogram_tags: 1, collisions: 0};
  assert.equal(cleanText(one), 'No colliding histogram tags in 1 run (1 tag)');
});

test('warnings carry their run, file and offset', () => {
  assert.deepEqual(warningList(collidingReport()), [
    {run: 'resumed', file: 'events.out.tfevents.2.host', offset: 4096, message: 'bad data CRC'},
  ]);
});

test("the logdir's own warnings follow the runs' with an empty run", () => {
  const report = {
    ...collidingReport(),
    warnings: [{file: '/logs/locked', offset: 0, message: 'could not be listed (Permission denied)'}],
  };
  assert.deepEqual(warningList(report).at(-1),
      {run: '', file: '/logs/locked', offset: 0, message: 'could not be listed (Permission denied)'});
});

test('lane count: one per same-step lane, one per file for cross-file collisions', () => {
  const report = collidingReport();
  assert.equal(laneCount(findCollision(report, 'train', SEED_TAG)), 3);
  assert.equal(laneCount(findCollision(report, 'resumed', 'dense/kernel_0/histogram')), 2);
  assert.equal(findCollision(report, 'clean', SEED_TAG), null);
  assert.equal(findCollision(report, 'missing', SEED_TAG), null);
});

test('a lane names its variable with confidence, or says it is unattributed', () => {
  const [seed, bias] = collisionList(collidingReport()).map((item) => item.collision);
  assert.equal(laneText(seed.lanes[1]), 'lane 1 → sequential/my_layer_1/my_variable1 (97%)');
  assert.equal(laneText(bias.lanes[0]), 'lane 0 → unattributed');
});

test('values, shapes and step ranges read like TensorBoard prints them', () => {
  assert.equal(formatValue(0.5), '0.5');
  assert.equal(formatValue(-1.23456), '-1.23');
  assert.equal(formatValue(123456), '1.23e+5');
  assert.equal(formatValue(0.0001), '1e-4');
  assert.equal(formatShape([3]), '(3,)');
  assert.equal(formatShape([5, 3]), '(5, 3)');
  assert.equal(formatShape(null), '');
  assert.equal(stepRange(0, 9), 'steps 0..9');
  assert.equal(stepRange(4, 4), 'step 4');
});
