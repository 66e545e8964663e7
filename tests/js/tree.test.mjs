import {test} from 'node:test';
import assert from 'node:assert/strict';

import {
  buildTree, collidingOnly, compileFilter, countTags, filterTree, pathTo, splitPath, visibleRows,
} from '../../frontend/tree.js';
import {SEED_TAG, cleanReport, collidingReport} from './report-fixture.mjs';

/** Child of `node` with `label`, failing the test when missing. */
function child(node, label) {
  const found = node.children.find((c) => c.label === label);
  assert.ok(found, `${node.label} has no child ${label}; has ${node.children.map((c) => c.label)}`);
  return found;
}

test('paths split into levels on / and .', () => {
  assert.deepEqual(splitPath('sequential/my_layer_1/my_variable1'), ['sequential', 'my_layer_1', 'my_variable1']);
  assert.deepEqual(splitPath('layer1.0.conv1.weight'), ['layer1', '0', 'conv1', 'weight']);
});

test('the seed case groups each my_variable1 under its own layer, lanes marked as colliding', () => {
  const trees = buildTree(collidingReport());
  assert.deepEqual(trees.map((t) => t.label), ['resumed', 'train', 'clean']);
  const train = trees[1];
  const sequential = child(train, 'sequential');
  assert.deepEqual(sequential.children.map((c) => c.label), ['my_layer', 'my_layer_1', 'my_layer_2']);

  const variable = child(child(sequential, 'my_layer_1'), 'my_variable1');
  assert.equal(variable.kind, 'variable');
  assert.equal(variable.variable.path, 'sequential/my_layer_1/my_variable1');
  const [leaf] = variable.children;
  assert.equal(leaf.kind, 'tag');
  assert.equal(leaf.tag, SEED_TAG);
  assert.equal(leaf.lane, 1);
  assert.equal(leaf.label, `${SEED_TAG} · lane 1`);
  assert.equal(leaf.colliding, 1);

  const clean = child(child(child(sequential, 'my_layer_2'), 'my_variable2'), 'sequential/my_layer_2/my_variable2_0/histogram');
  assert.equal(clean.colliding, 0);
  assert.equal(clean.lane, null);
  assert.equal(sequential.colliding, 3);
});

test('colliding tags no group mentions still appear, split like paths', () => {
  const [resumed, train] = buildTree(collidingReport());
  const leaf = child(child(child(resumed, 'dense'), 'kernel_0'), 'histogram');
  assert.equal(leaf.tag, 'dense/kernel_0/histogram');
  assert.equal(leaf.colliding, 1);
  assert.equal(child(child(train, 'bias_0'), 'histogram').tag, 'bias_0/histogram');
  assert.equal(train.colliding, 4);
});

test('tags of a group that no variable claims sit under the group', () => {
  const [root] = buildTree(cleanReport());
  const dense = child(root, 'dense');
  assert.deepEqual(child(child(dense, 'kernel_0'), 'histogram').tag, 'dense/kernel_0/histogram');
  assert.equal(root.colliding, 0);
});

test('node ids are unique across the whole forest', () => {
  const ids = [];
  const walk = (node) => {
    ids.push(node.id);
    node.children.forEach(walk);
  };
  buildTree(collidingReport()).forEach(walk);
  assert.equal(new Set(ids).size, ids.length);
});

test('the regex filter keeps matching variables and tags with their ancestors', () => {
  const trees = buildTree(collidingReport());
  const {regex, error} = compileFilter('MY_LAYER_1/my_var.*1');
  assert.equal(error, null);
  const kept = filterTree(trees, regex);
  assert.deepEqual(kept.map((t) => t.label), ['train']);
  const sequential = child(kept[0], 'sequential');
  assert.deepEqual(sequential.children.map((c) => c.label), ['my_layer_1']);
  assert.deepEqual(child(sequential, 'my_layer_1').children.map((c) => c.label), ['my_variable1']);
  assert.equal(kept[0].colliding, 1);
  assert.equal(countTags(kept), 1);
});

test('the filter matches tag names too', () => {
  const kept = filterTree(buildTree(collidingReport()), compileFilter('^dense/').regex);
  assert.deepEqual(kept.map((t) => t.label), ['resumed']);
  assert.deepEqual(filterTree(buildTree(collidingReport()), compileFilter('nothing-like-this').regex), []);
});

test('an invalid regex reports an error and filters nothing', () => {
  const trees = buildTree(collidingReport());
  const filter = compileFilter('my_layer_(1');
  assert.equal(filter.regex, null);
  assert.match(filter.error, /Invalid regular expression/);
  assert.equal(filterTree(trees, filter.regex), trees);
  assert.deepEqual(compileFilter(''), {regex: null, error: null});
});

/** A report of `runs` runs of `tags` tags each, one tag in ten written by three layers, every tag in a group. */
function bigReport(runs, tags) {
  const report = {schema: 'tb-varscope/1', logdir: '/l', summary: {runs, histogram_tags: runs * tags, collisions: 0,
    warnings: 0}, runs: []};
  for (let r = 0; r < runs; r++) {
    const collisions = [];
    const groups = [];
    for (let t = 0; t < tags; t++) {
      const block = `model/block_${Math.floor(t / 10)}`;
      const tag = `${block}/conv_${t % 10}/kernel`;
      const colliding = t % 10 === 0;
      if (colliding) {
        collisions.push({tag, kind: 'same-step', writers: 3, steps: 5, first_step: 0, last_step: 4, files: ['f'],
          lanes: [0, 1, 2].map((lane) => ({lane, variable: `${block}/v${lane}`, checkpoint_key: null, shape: null,
            elements: 1, confidence: 1, evidence: ''})), explanation: '', fix: ''});
      }
      const variables = colliding ? [0, 1, 2].map((lane) => ({name: `v${lane}`, path: `${block}/v${lane}`,
        checkpoint_key: null, shape: null, tag, lane})) : [];
      groups.push({path: block, tags: [tag], variables});
    }
    report.summary.collisions += collisions.length;
    report.runs.push({run: `run_${r}`, event_files: 1, histogram_tags: tags, checkpoint: null, warnings: [],
      collisions, groups});
  }
  return report;
}

test('the tree counts each tag once, lanes included, so it agrees with the header', () => {
  const trees = buildTree(collidingReport());
  assert.equal(countTags(trees), 6, 'the seed tag counts once, not once per lane');
  const big = bigReport(2, 300);
  assert.equal(countTags(buildTree(big)), big.summary.histogram_tags);
});

test('colliding only keeps the colliding tag entries and their ancestors', () => {
  const trees = collidingOnly(buildTree(collidingReport()));
  assert.deepEqual(trees.map((t) => t.label), ['resumed', 'train']);
  const leaves = [];
  const walk = (node) => (node.kind === 'tag' ? leaves.push(node) : node.children.forEach(walk));
  trees.forEach(walk);
  assert.ok(leaves.length > 0 && leaves.every((leaf) => leaf.colliding === 1));
});

test('at 10,000 tags only open nodes make rows: runs open, the rest folded', () => {
  const trees = buildTree(bigReport(10, 1000));
  assert.equal(countTags(trees), 10000);
  const folded = visibleRows(trees, (node, depth) => depth === 0);
  assert.equal(folded.length, 20, 'ten runs and their one `model` scope each');
  assert.deepEqual(folded.slice(0, 2).map((row) => [row.depth, row.open, row.node.kind]),
    [[0, true, 'run'], [1, false, 'scope']]);
  assert.deepEqual(folded.map((row) => row.posinset).slice(0, 3), [1, 1, 2]);
  assert.equal(folded[0].setsize, 10);
  const all = visibleRows(trees, () => true);
  assert.ok(all.length > 10000);
  assert.equal(all.filter((row) => row.node.kind === 'tag').length, 10000 - 1000 + 3000);
});

test('the path to a tag lists the nodes to unfold, top down', () => {
  const trees = buildTree(collidingReport());
  const path = pathTo(trees, (node) => node.tag === SEED_TAG && node.lane === 2);
  const rows = visibleRows(trees, (node) => path.includes(node.id));
  const leaf = rows.find((row) => row.node.tag === SEED_TAG);
  assert.equal(leaf.node.lane, 2);
  assert.equal(leaf.depth, path.length);
  assert.ok(rows.length < visibleRows(trees, () => true).length);
  assert.deepEqual(pathTo(trees, () => false), []);
});
