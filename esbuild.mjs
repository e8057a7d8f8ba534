// Bundles the extension, the CLI, the webview front ends and the test modules.
// `--production` minifies and drops source maps; `--watch` rebuilds on change.
import { chmodSync, existsSync, readdirSync } from "node:fs";
import * as esbuild from "esbuild";

const production = process.argv.includes("--production");
const watch = process.argv.includes("--watch");

const common = {
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  sourcemap: production ? false : "linked",
  minify: production,
  logLevel: "warning",
  // vscode is provided by the host; mocha is loaded from node_modules by the test host.
  external: ["vscode", "mocha"],
  // Some ESM-only dependencies (execa) read import.meta.url; give them a CJS equivalent.
  define: { "import.meta.url": "importMetaUrl" },
  banner: { js: "const importMetaUrl = require('url').pathToFileURL(__filename).href;" },
};

const list = (dir, re) => (existsSync(dir) ? readdirSync(dir).filter((f) => re.test(f)) : []);

const builds = [
  {
    ...common,
    entryPoints: { extension: "src/extension.ts" },
    outdir: "dist",
    // Stamped before any bundled module runs, so activation time includes loading them.
    banner: { js: `globalThis.__gpuwbLoadStart = performance.now();\n${common.banner.js}` },
  },
  {
    ...common,
    entryPoints: { cli: "src/cli/bin.ts" },
    outdir: "dist",
    banner: { js: `#!/usr/bin/env node\n${common.banner.js}` },
  },
];

// Webview front ends: media/src/<name>.ts → dist/media/<name>.js (browser bundles).
const webviews = list("media/src", /\.ts$/);
if (webviews.length) {
  builds.push({
    bundle: true,
    platform: "browser",
    format: "iife",
    target: "es2022",
    sourcemap: production ? false : "linked",
    minify: production,
    logLevel: "warning",
    entryPoints: webviews.map((f) => `media/src/${f}`),
    outdir: "dist/media",
  });
}

if (!production) {
  const unit = list("test/unit", /\.test\.ts$/).map((f) => `test/unit/${f}`);
  if (unit.length) builds.push({ ...common, entryPoints: unit, outdir: "out/test/unit" });
  builds.push({
    ...common,
    entryPoints: { index: "test/integration/index.ts" },
    outdir: "out/test/integration",
  });
  const suites = list("test/integration/suite", /\.test\.ts$/).map((f) => `test/integration/suite/${f}`);
  builds.push({ ...common, entryPoints: suites, outdir: "out/test/integration/suite" });
  if (existsSync("test/integration/bench.ts")) {
    builds.push({ ...common, entryPoints: { bench: "test/integration/bench.ts" }, outdir: "out/test/integration" });
  }
}

if (watch) {
  for (const b of builds) await (await esbuild.context(b)).watch();
  console.log("esbuild: watching…");
} else {
  const t0 = performance.now();
  await Promise.all(builds.map((b) => esbuild.build(b)));
  chmodSync("dist/cli.js", 0o755);
  console.log(`esbuild: built ${builds.length} bundles in ${Math.round(performance.now() - t0)} ms`);
}
