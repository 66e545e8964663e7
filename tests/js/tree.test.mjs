import {test} from 'node:test';
import assert from 'node:assert/strict';

import {buildTree, compileFilter, countTagEntries, filterTree, splitPath} from '../../frontend/tree.js';
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
  assert.equal(countTagEntries(kept), 1);
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
