// The cell-marker injection grammar: its patterns compile as JavaScript RegExps (and avoid
// syntax that Oniguruma reads differently), match the marker lines, and are contributed.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { test } from "node:test";

const root = process.cwd();
const GRAMMAR_PATH = "syntaxes/cell-markers.tmLanguage.json";
const SCOPE = "gpu-workbench.cell-markers";

interface Rule {
  match?: string;
  begin?: string;
  end?: string;
  while?: string;
  name?: string;
  include?: string;
  captures?: Record<string, { name?: string }>;
  patterns?: Rule[];
}

interface Grammar {
  scopeName: string;
  injectionSelector?: string;
  patterns: Rule[];
  repository?: Record<string, Rule>;
}

function grammar(): Grammar {
  return JSON.parse(readFileSync(path.join(root, GRAMMAR_PATH), "utf8"));
}

/** Every rule in the grammar: top-level patterns, the repository, nested patterns. */
function rules(g: Grammar): Rule[] {
  const out: Rule[] = [];
  const walk = (rule: Rule) => {
    out.push(rule);
    for (const child of rule.patterns ?? []) walk(child);
  };
  for (const rule of g.patterns) walk(rule);
  for (const rule of Object.values(g.repository ?? {})) walk(rule);
  return out;
}

function sources(rule: Rule): string[] {
  return [rule.match, rule.begin, rule.end, rule.while].filter((s): s is string => typeof s === "string");
}

/** The rules that match whole marker lines, compiled as JS RegExps. */
function markerRules(): { rule: Rule; re: RegExp }[] {
  return rules(grammar())
    .filter((r) => r.match !== undefined)
    .map((rule) => ({ rule, re: new RegExp(rule.match as string) }));
}

interface Tokens {
  line: string;
  keyword?: string;
  tag?: string;
  title?: string;
}

/** Apply the grammar to one line the way a TextMate engine would for a `match` rule. */
function tokenize(line: string): Tokens | undefined {
  for (const { rule, re } of markerRules()) {
    const m = re.exec(line);
    if (!m) continue;
    assert.equal(m.index, 0, "markers start at column 0");
    assert.equal(rule.name, "meta.cell-marker.gpu-workbench");
    const out: Tokens = { line: m[0] };
    for (const [group, capture] of Object.entries(rule.captures ?? {})) {
      const text = m[Number(group)];
      if (text === undefined) continue;
      if (capture.name === "keyword.control.cell-marker.gpu-workbench") out.keyword = text;
      else if (capture.name === "entity.name.tag.cell-type.gpu-workbench") out.tag = text;
      else if (capture.name === "entity.name.section.cell-title.gpu-workbench") out.title = text;
      else assert.fail(`unexpected capture scope ${capture.name}`);
    }
    return out;
  }
  return undefined;
}

test("the grammar is an injection grammar into Python code, outside strings", () => {
  const g = grammar();
  assert.equal(g.scopeName, SCOPE);
  const selector = g.injectionSelector ?? "";
  assert.match(selector, /^L:source\.python\b/);
  assert.match(selector, /-string\b/);
  assert.ok(g.patterns.length > 0);
  for (const rule of g.patterns) {
    if (rule.include?.startsWith("#")) assert.ok(g.repository?.[rule.include.slice(1)], `${rule.include} exists`);
  }
});

test("every pattern compiles as a JS RegExp and avoids syntax Oniguruma reads differently", () => {
  const all = rules(grammar()).flatMap(sources);
  assert.ok(all.length >= 2);
  for (const source of all) {
    assert.doesNotThrow(() => new RegExp(source), source);
    assert.doesNotThrow(() => new RegExp(source, "u"), `${source} (unicode mode)`);
    // \h (hex digit), \A \Z \z \G \K \R \X anchors/escapes, inline flag groups, \p{...}
    // and named groups are Oniguruma-only or differ between the engines.
    assert.doesNotMatch(source, /\\[hAZzGKRX]|\(\?[imx-]+[:)]|\\p\{|\(\?<(?![=!])/, source);
    // Every marker is anchored at the start of the line.
    assert.ok(source.startsWith("^"), `${source} is anchored`);
  }
});

test("percent markers: keyword, markdown tag and title", () => {
  assert.deepEqual(tokenize("# %%"), { line: "# %%", keyword: "# %%" });
  assert.deepEqual(tokenize("#%% title here"), { line: "#%% title here", keyword: "#%%", title: "title here" });
  assert.deepEqual(tokenize("#\t%%   spaced title  "), {
    line: "#\t%%   spaced title  ",
    keyword: "#\t%%",
    title: "spaced title",
  });
  assert.deepEqual(tokenize("# %% [markdown] Notes"), {
    line: "# %% [markdown] Notes",
    keyword: "# %%",
    tag: "[markdown]",
    title: "Notes",
  });
  assert.deepEqual(tokenize("# %% [md]"), { line: "# %% [md]", keyword: "# %%", tag: "[md]" });
  assert.deepEqual(tokenize("# %% [Markdown]"), { line: "# %% [Markdown]", keyword: "# %%", tag: "[Markdown]" });
  // Not a cell type: part of the title.
  assert.equal(tokenize("# %% [markdownish] x")?.title, "[markdownish] x");
});

test("In[ ] prompts: keyword and title", () => {
  assert.deepEqual(tokenize("# In[3]:"), { line: "# In[3]:", keyword: "# In[3]:" });
  assert.deepEqual(tokenize("# In[ ]: load"), { line: "# In[ ]: load", keyword: "# In[ ]:", title: "load" });
  assert.deepEqual(tokenize("#In[]:"), { line: "#In[]:", keyword: "#In[]:" });
});

test("other lines are not markers", () => {
  for (const line of [
    "",
    "x = 1",
    "x = 1  # %%",
    "  # %% indented",
    "\t# %%",
    "# % one percent",
    "## %%",
    "print('# %%')",
    "# In[3]",
    "# In 3:",
    "# comment",
  ]) {
    assert.equal(tokenize(line), undefined, JSON.stringify(line));
  }
});

test("the grammar agrees with the default gpuWorkbench.cells.markers setting", () => {
  const pkg = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8"));
  const setting = pkg.contributes?.configuration;
  const sections = Array.isArray(setting) ? setting : [setting];
  const markers: string[] | undefined = sections
    .map((s: { properties?: Record<string, { default?: unknown }> }) => s?.properties?.["gpuWorkbench.cells.markers"])
    .find((p: unknown) => p !== undefined)?.default as string[] | undefined;
  assert.ok(Array.isArray(markers) && markers.length > 0, "the setting has a default");
  const defaults = markers.map((m) => new RegExp(m));
  for (const line of [
    "# %%",
    "#%% t",
    "# %% [markdown] x",
    "# In[12]:",
    "# In[ ]: x",
    "x = 1",
    "  # %%",
    "## %%",
    "# In[3]",
    "# In 3:",
  ]) {
    const bySetting = defaults.some((re) => re.test(line));
    assert.equal(tokenize(line) !== undefined, bySetting, JSON.stringify(line));
  }
});

test("package.json contributes the grammar with the same scope, injected into Python", () => {
  const pkg = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8"));
  const entries: { scopeName?: string; path?: string; injectTo?: string[] }[] = pkg.contributes?.grammars ?? [];
  const entry = entries.find((g) => g.path !== undefined && path.normalize(g.path) === path.normalize(GRAMMAR_PATH));
  assert.ok(entry, `contributes.grammars lists ${GRAMMAR_PATH}`);
  assert.equal(entry.scopeName, grammar().scopeName);
  assert.ok(entry.injectTo?.includes("source.python"), "injected into source.python");
});
