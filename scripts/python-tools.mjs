// Python lint, format and type check with tools from the npm registry only (no PyPI):
// Ruff's official WebAssembly build for lint and format, Pyright for types.
//   node scripts/python-tools.mjs lint       ruff check + format check (exit 1 on findings)
//   node scripts/python-tools.mjs format     rewrite files with ruff's formatter
//   node scripts/python-tools.mjs typecheck  pyright on server-python/
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";

const require = createRequire(import.meta.url);
const ROOTS = ["server-python", "bench", "examples", "test"];
const SKIP = new Set(["node_modules", "__pycache__", ".pytest_cache", ".hypothesis", "dist", "out"]);

// One place for the settings; pyproject.toml's [tool.ruff] documents the same for editors.
// No pyupgrade (UP) rules: they suggest `X | None`, which the backend's dataclass converter
// would evaluate at run time and Python 3.9 rejects; tests/test_py39_syntax.py guards syntax.
const SETTINGS = {
  "line-length": 100,
  "target-version": "py39",
  lint: {
    select: ["E", "F", "W", "I", "B", "SIM", "RUF"],
    ignore: ["E501", "RUF012", "SIM105"],
    isort: { "known-first-party": ["gpu_workbench", "conftest"] },
  },
  format: { "quote-style": "double" },
};

function pythonFiles(dir, out = []) {
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries) {
    if (SKIP.has(name)) continue;
    const p = path.join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) pythonFiles(p, out);
    else if (name.endsWith(".py")) out.push(p);
  }
  return out;
}

function workspace() {
  const ruff = require("@astral-sh/ruff-wasm-nodejs");
  return new ruff.Workspace(SETTINGS, ruff.PositionEncoding.Utf16);
}

const mode = process.argv[2];
// Optional paths after the mode limit the run to those files (e.g. while others edit theirs).
const only = process.argv.slice(3);
const files = only.length ? only : ROOTS.flatMap((r) => pythonFiles(r));

if (mode === "lint" || mode === "format") {
  const ws = workspace();
  let problems = 0;
  for (const f of files) {
    const src = readFileSync(f, "utf8");
    const formatted = ws.format(src);
    if (mode === "format") {
      if (formatted !== src) {
        writeFileSync(f, formatted);
        console.log(`formatted ${f}`);
      }
      continue;
    }
    for (const d of ws.check(src)) {
      // Cell files import where a cell needs it.
      if (d.code === "E402" && f.startsWith("examples")) continue;
      problems++;
      console.log(`${f}:${d.start_location.row}:${d.start_location.column}: ${d.code ?? "syntax"} ${d.message}`);
    }
    if (formatted !== src) {
      problems++;
      console.log(`${f}: not formatted (run npm run format)`);
    }
  }
  if (mode === "lint") {
    console.log(`ruff: ${files.length} Python files, ${problems} problem(s)`);
    process.exit(problems ? 1 : 0);
  }
} else if (mode === "typecheck") {
  const pyright = require.resolve("pyright/index.js");
  const r = spawnSync(process.execPath, [pyright, "-p", "server-python"], { stdio: "inherit" });
  process.exit(r.status ?? 1);
} else {
  console.error("usage: node scripts/python-tools.mjs lint|format|typecheck");
  process.exit(2);
}
