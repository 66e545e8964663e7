import {test} from 'node:test';
import assert from 'node:assert/strict';
import {readFileSync, readdirSync} from 'node:fs';

// Run and tag names come from files on disk; no frontend file may hand text to an HTML parser.
const FRONTEND = new URL('../../frontend/', import.meta.url);
const SINKS = /innerHTML|outerHTML|insertAdjacentHTML|document\.write|DOMParser|createContextualFragment/;

test('no frontend file uses an HTML-parsing DOM sink', () => {
  const files = readdirSync(FRONTEND).filter((name) => /\.(js|css)$/.test(name));
  assert.ok(files.includes('index.js') && files.includes('views.js'), `frontend files: ${files}`);
  for (const name of files) {
    const lines = readFileSync(new URL(name, FRONTEND), 'utf8').split('\n');
    const hits = lines.flatMap((line, i) => (SINKS.test(line) ? [`${name}:${i + 1}: ${line.trim()}`] : []));
    assert.deepEqual(hits, []);
  }
});
