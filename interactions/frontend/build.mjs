// Build src/ into ../static/interactions/canvas/canvas.js and canvas.css (or into the folder
// given as the first argument): one bundle, minified, no hashes, timestamps or source maps,
// so the same sources and lockfile always give the same bytes (tests/interactions/test_frontend_bundle.py).
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = path.resolve(process.argv[2] || path.join(here, '..', 'static', 'interactions', 'canvas'));

await build({
  entryPoints: { canvas: path.join(here, 'src', 'main.jsx') },
  outdir,
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['es2020'],
  jsx: 'automatic',
  legalComments: 'eof',
  charset: 'utf8',
  define: { 'process.env.NODE_ENV': '"production"' },
  logLevel: 'warning',
  absWorkingDir: here,
});
console.log(`built ${path.relative(process.cwd(), outdir) || '.'}/canvas.js and canvas.css`);
