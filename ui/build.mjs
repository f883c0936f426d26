// Bundles the dashboard: src/main.ts → dist/app.js, and copies index.html
// and app.css. `npm run build`; dist/ is committed so the hub's Rust build
// needs no Node. `--watch` rebuilds on change.
import { build, context } from 'esbuild';
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, 'dist');
await mkdir(dist, { recursive: true });
for (const f of ['index.html', 'app.css']) {
  await copyFile(path.join(here, 'src', f), path.join(dist, f));
}
const options = {
  entryPoints: [path.join(here, 'src', 'main.ts')],
  outfile: path.join(dist, 'app.js'),
  bundle: true,
  format: 'esm',
  target: 'es2022',
  minify: true,
  legalComments: 'none',
  logLevel: 'info',
};
if (process.argv.includes('--watch')) {
  await (await context(options)).watch();
} else {
  await build(options);
}
