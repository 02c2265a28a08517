// Size budget (README.md, "Size"): bundle + minify with esbuild the JSON-only entry and the
// msgpack-enabled one, print the sizes, fail past the budget. The JSON-only bundle must not
// contain @msgpack/msgpack.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const BUDGET = { json: 20 * 1024, msgpack: 48 * 1024 }; // bytes, minified (not gzipped)

async function bundle(contents) {
  const r = await build({
    stdin: { contents, resolveDir: ROOT, sourcefile: 'entry.js' },
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'neutral', // browsers and mini-programs alike
    mainFields: ['browser', 'module', 'main'],
    target: 'es2018', // WeChat mini-program base libraries
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
  const code = r.outputFiles[0].contents;
  return { bytes: code.length, gzip: gzipSync(code).length, inputs: Object.keys(r.metafile.inputs) };
}

test('bundle size within budget', async (t) => {
  const json = await bundle("export * from './src/index.js';");
  const mp = await bundle("export * from './src/index.js'; export * from './src/msgpack.js';");
  const wx = await bundle("export * from './src/index.js'; export * from './src/wx.js';");
  const kb = (n) => (n / 1024).toFixed(1) + ' KB';
  t.diagnostic(`JSON-only: ${kb(json.bytes)} minified (${kb(json.gzip)} gzip), budget ${kb(BUDGET.json)}`);
  t.diagnostic(`with msgpack: ${kb(mp.bytes)} minified (${kb(mp.gzip)} gzip), budget ${kb(BUDGET.msgpack)}`);
  t.diagnostic(`JSON + cardgw/wx: ${kb(wx.bytes)} minified (${kb(wx.gzip)} gzip), budget ${kb(BUDGET.json)}`);
  assert.ok(!json.inputs.some((i) => i.includes('@msgpack')), 'the JSON-only build does not pull @msgpack/msgpack');
  assert.ok(mp.inputs.some((i) => i.includes('@msgpack')));
  assert.ok(json.bytes <= BUDGET.json, `JSON-only ${json.bytes} B > ${BUDGET.json} B`);
  assert.ok(wx.bytes <= BUDGET.json, `JSON + wx ${wx.bytes} B > ${BUDGET.json} B (the WeChat adapter fits the JSON budget)`);
  assert.ok(!wx.inputs.some((i) => i.includes('@msgpack')));
  assert.ok(mp.bytes <= BUDGET.msgpack, `msgpack ${mp.bytes} B > ${BUDGET.msgpack} B`);
});
