import {test} from 'node:test';
import assert from 'node:assert/strict';

import {DEFAULT_STATE, formatHash, parseHash, readState, writeState} from '../../frontend/urlstate.js';

test('the hash is read and written in TensorBoard tf_storage spelling, other keys kept', () => {
  const dict = parseHash('#varscope&_smoothingWeight=0.6&tagFilter=a%26b');
  assert.deepEqual(dict, {__tab__: 'varscope', _smoothingWeight: '0.6', tagFilter: 'a&b'});
  assert.equal(formatHash(dict), 'varscope&_smoothingWeight=0.6&tagFilter=a%26b');
  assert.equal(formatHash({__tab__: 'varscope'}), 'varscope');
});

test('a view survives the round trip through the hash, names with any character included', () => {
  const state = {...DEFAULT_STATE, run: 'run&1=#x', tag: '\u202egnp.exe\u202c/kernel', lane: 2,
    view: 'distributions', mode: 'overlay', time: 'relative', range: 'lane', filter: 'block_12/',
    runFilter: '^keras', hiddenRuns: ['torch', 'a"b'], colliding: false};
  const hash = formatHash(writeState(parseHash('#varscope&other=1'), state));
  assert.ok(hash.startsWith('varscope&other=1&'));
  assert.deepEqual(readState(parseHash(hash)), state);
});

test('defaults are left out of the hash and restored when missing', () => {
  assert.equal(formatHash(writeState({__tab__: 'varscope'}, DEFAULT_STATE)), 'varscope');
  assert.deepEqual(readState({}), DEFAULT_STATE);
});

test('malformed values fall back to defaults instead of failing', () => {
  const state = readState(parseHash('#varscope&p.varscope.mode=sideways&p.varscope.lane=-1&p.varscope.hide=%5B1' +
    '&p.varscope.tag=t&p.varscope.time=%E0%A4%A'));
  assert.equal(state.mode, 'offset');
  assert.equal(state.lane, null);
  assert.deepEqual(state.hiddenRuns, []);
  assert.equal(state.tag, null, 'a tag without its run opens nothing');
  assert.equal(state.time, 'step');
});

test('leaving the lanes view drops run, tag and lane from the hash', () => {
  const open = writeState({}, {...DEFAULT_STATE, run: 'r', tag: 't', lane: 1});
  assert.equal(open['p.varscope.lane'], '1');
  const closed = writeState(open, DEFAULT_STATE);
  assert.deepEqual(closed, {});
});
