import {test} from 'node:test';
import assert from 'node:assert/strict';

import {HttpError, histogramsUrl, reportUrl} from '../../frontend/model.js';

const MODULE = 'http://localhost:6006/data/plugin/varscope/index.js';
const HOSTILE = ['a&b=c', '<img src=x onerror=alert(1)>', '#', '%', '%41', 'a+b c', 'ラン/層.重み', '../..', '?lane=9'];

test('routes resolve beside the module, also under a path prefix', () => {
  assert.equal(reportUrl(MODULE), 'http://localhost:6006/data/plugin/varscope/report');
  const prefixed = histogramsUrl('r', 't', 0, 'https://host/tb/experiment/x/data/plugin/varscope/index.js');
  assert.equal(new URL(prefixed).pathname, '/tb/experiment/x/data/plugin/varscope/histograms');
  assert.match(reportUrl(), /\/frontend\/report$/);
});

test('hostile run and tag names round-trip through the query string', () => {
  for (const run of HOSTILE) {
    for (const tag of HOSTILE) {
      const url = new URL(histogramsUrl(run, tag, 2, MODULE));
      assert.equal(url.pathname, '/data/plugin/varscope/histograms');
      assert.equal(url.hash, '');
      assert.deepEqual([...url.searchParams.keys()], ['run', 'tag', 'lane']);
      assert.equal(url.searchParams.get('run'), run);
      assert.equal(url.searchParams.get('tag'), tag);
      assert.equal(url.searchParams.get('lane'), '2');
    }
  }
});

test('an HTTP error reads as status plus the server text', () => {
  assert.equal(new HttpError(404, 'NOT FOUND', 'Unknown run: x\n').message, 'HTTP 404: Unknown run: x');
  assert.equal(new HttpError(500, 'INTERNAL SERVER ERROR', '').message, 'HTTP 500: INTERNAL SERVER ERROR');
  assert.equal(new HttpError(400, 'BAD REQUEST', 'lane must be an integer').status, 400);
});
