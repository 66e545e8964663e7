import {test} from 'node:test';
import assert from 'node:assert/strict';

import {formatDuration, tabEvidence, visible} from '../../frontend/format.js';

test('bidirectional controls and other unprintables are shown as the CLI escapes them', () => {
  // Expected strings are what the CLI prints: c if c.isprintable() else c.encode('unicode_escape').
  assert.equal(visible('\u202egnp.exe\u202c/kernel'), '\\u202egnp.exe\\u202c/kernel');
  assert.equal(visible('k\x07\t\u{e0001} \u00a0'), 'k\\x07\\t\\U000e0001 \\xa0');
  assert.equal(visible('sequential/dense_1/kernel ラン'), 'sequential/dense_1/kernel ラン');
  assert.equal(visible('a\u2066b\u2069\u200f'), 'a\\u2066b\\u2069\\u200f');
});

test('relative times read like TensorBoard axis labels', () => {
  assert.equal(formatDuration(12.34), '12.3s');
  assert.equal(formatDuration(125), '2m 5s');
  assert.equal(formatDuration(3 * 3600 + 20 * 60), '3h 20m');
});

test('the tab names the TensorBoard flag where the report names the CLI one', () => {
  assert.equal(tabEvidence('no checkpoint found (name one with --checkpoint), so'),
    'no checkpoint found (name one with --varscope_checkpoint), so');
  assert.equal(tabEvidence('--varscope_checkpoint stays'), '--varscope_checkpoint stays');
});
