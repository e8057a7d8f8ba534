// gpuwb vm providers / offerings / list / create / start / stop / terminate / cost, end to end:
// the built CLI and the real backend, against the fake Lambda and Linode contract servers
// (server-python/tests/vms/fake_clouds.py) and moto for EC2 when it is installed.
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";

const ROOT = process.cwd();
const cli = path.join(ROOT, "dist", "cli.js");
const dataDir = mkdtempSync(path.join(tmpdir(), "gpuwb-cli-vm-data-"));
const work = mkdtempSync(path.join(tmpdir(), "gpuwb-cli-vm-"));
const home = mkdtempSync(path.join(tmpdir(), "gpuwb-cli-vm-home-"));
const FAKES = path.join(ROOT, "server-python", "tests", "vms", "fake_clouds.py");
/** Distinctive, so a leak anywhere in the output is found. */
const TOKEN = "gpuwb-test-token-7f3a9c1e5b";
const BAD_TOKEN = "gpuwb-wrong-token-0d4e8b2a61";

let fakes: ChildProcess | undefined;
let moto: ChildProcess | undefined;
const env: NodeJS.ProcessEnv = {
  ...process.env,
  // No ~/.ssh/config, ~/.aws or ~/.sky of the person running the tests.
  HOME: home,
  AWS_ACCESS_KEY_ID: "testing",
  AWS_SECRET_ACCESS_KEY: "testing",
  AWS_DEFAULT_REGION: "us-east-1",
  AWS_EC2_METADATA_DISABLED: "true",
};
for (const k of ["GPUWB_LAMBDA_API_KEY", "GPUWB_LINODE_API_TOKEN", "AWS_PROFILE", "GPUWB_AWS_ENDPOINT_URL"])
  delete env[k];
let clouds = false; // the fake Lambda/Linode servers are up
let aws = false; // moto is up
let vmBackend = false; // the backend answers vm/*

function gpuwb(args: string[], extraEnv: NodeJS.ProcessEnv = {}, input?: string) {
  const r = spawnSync(process.execPath, [cli, "--data-dir", dataDir, ...args], {
    encoding: "utf8",
    timeout: 90_000,
    cwd: work,
    env: { ...env, ...extraEnv },
    ...(input !== undefined ? { input } : {}),
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** With the good tokens. */
const authed = { GPUWB_LAMBDA_API_KEY: TOKEN, GPUWB_LINODE_API_TOKEN: TOKEN };

function noSecrets(r: { stdout: string; stderr: string }) {
  for (const s of [TOKEN, BAD_TOKEN]) {
    assert.ok(!r.stdout.includes(s), "a token was echoed on stdout");
    assert.ok(!r.stderr.includes(s), "a token was echoed on stderr");
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** The first line a child prints on stdout (the fakes print their URLs as JSON). */
function firstLine(child: ChildProcess, ms: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => reject(new Error(`no output in ${ms} ms`)), ms);
    child.stdout?.setEncoding("utf8");
    child.stdout?.on("data", (d: string) => {
      buf += d;
      const nl = buf.indexOf("\n");
      if (nl >= 0) {
        clearTimeout(timer);
        resolve(buf.slice(0, nl));
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code}`));
    });
  });
}

async function waitHttp(url: string, ms: number): Promise<boolean> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    try {
      await fetch(url);
      return true;
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return false;
}

before(async () => {
  const probe = gpuwb(["vm", "providers", "--json"]);
  vmBackend = probe.code === 0;
  if (!vmBackend) return;
  if (existsSync(FAKES)) {
    fakes = spawn("python3", [FAKES, "--lambda-port", "0", "--linode-port", "0", "--token", TOKEN], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const urls = JSON.parse(await firstLine(fakes, 20_000)) as Record<string, string>;
    const lambdaUrl = urls.lambda ?? urls.lambdaUrl ?? urls.lambda_url;
    const linodeUrl = urls.linode ?? urls.linodeUrl ?? urls.linode_url;
    if (lambdaUrl && linodeUrl) {
      env.GPUWB_LAMBDA_API_URL = lambdaUrl;
      env.GPUWB_LINODE_API_URL = linodeUrl;
      clouds = true;
    }
  }
  if (spawnSync("python3", ["-c", "import moto.server, boto3"]).status === 0) {
    const port = await freePort();
    moto = spawn("python3", ["-m", "moto.server", "-H", "127.0.0.1", "-p", String(port)], { stdio: "ignore" });
    const url = `http://127.0.0.1:${port}`;
    if (await waitHttp(url, 30_000)) {
      env.GPUWB_AWS_ENDPOINT_URL = url;
      aws = true;
    }
  }
});

after(() => {
  fakes?.kill();
  moto?.kill();
});

const needBackend = (t: { skip(m: string): void }) => {
  if (!vmBackend) t.skip("the backend has no vm/* handlers yet");
  return !vmBackend;
};
const needClouds = (t: { skip(m: string): void }) => {
  if (needBackend(t)) return true;
  if (!clouds) t.skip("server-python/tests/vms/fake_clouds.py has not landed");
  return !clouds;
};
const needAws = (t: { skip(m: string): void }) => {
  if (needBackend(t)) return true;
  if (!aws) t.skip("moto is not installed");
  return !aws;
};

// ---- help and usage (no provider contacted) ----

test("vm --help lists every subcommand; --help documents the credential variables", () => {
  const r = gpuwb(["vm", "--help"]);
  assert.equal(r.code, 0);
  for (const c of ["providers", "offerings", "list", "create", "start", "stop", "terminate", "cost"]) {
    assert.match(r.stdout, new RegExp(`vm ${c} `));
  }
  assert.match(gpuwb(["--help"]).stdout, /\bvm\b.*GPU machines/);
  const h = gpuwb(["vm", "list", "--help"]);
  assert.equal(h.code, 0);
  assert.match(h.stdout, /GPUWB_LAMBDA_API_KEY/);
  assert.match(h.stdout, /GPUWB_LINODE_API_TOKEN/);
  assert.match(gpuwb(["vm", "create", "--help"]).stdout, /--ssh-public-key FILE/);
});

test("usage errors exit 2 and say what to do", () => {
  const none = gpuwb(["vm", "offerings"]);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /missing arguments\. Usage: gpuwb vm offerings PROVIDER/);
  const missing = gpuwb(["vm", "create", "lambda", "--type", "x"]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /missing --region, --name/);
  const both = gpuwb(
    ["vm", "create", "lambda", "--type", "x", "--region", "r", "--name", "n", "--ssh-key", "k"].concat([
      "--ssh-public-key",
      "/nonexistent.pub",
    ]),
  );
  assert.equal(both.code, 2);
  assert.match(both.stderr, /--ssh-key or --ssh-public-key, not both/);
  const file = gpuwb(
    ["vm", "create", "lambda", "--type", "x", "--region", "r", "--name", "n"].concat([
      "--ssh-public-key",
      path.join(work, "none.pub"),
    ]),
  );
  assert.equal(file.code, 2);
  assert.match(file.stderr, /cannot read --ssh-public-key .*none\.pub: no such file/);
  const tag = gpuwb(["vm", "create", "lambda", "--type", "x", "--region", "r", "--name", "n", "--tag", "novalue"]);
  assert.equal(tag.code, 2);
  assert.match(tag.stderr, /--tag takes KEY=VALUE/);
  const disk = gpuwb(["vm", "create", "lambda", "--type", "x", "--region", "r", "--name", "n", "--disk", "-5"]);
  assert.equal(disk.code, 2);
  const days = gpuwb(["vm", "cost", "--days", "0"]);
  assert.equal(days.code, 2);
  assert.match(days.stderr, /--days must be a whole number above 0/);
  const budget = gpuwb(["vm", "cost", "--daily-budget", "lots"]);
  assert.equal(budget.code, 2);
  const extra = gpuwb(["vm", "stop", "linode"]);
  assert.equal(extra.code, 2);
  assert.match(extra.stderr, /missing arguments/);
});

test("create, stop and terminate without a terminal and without --yes refuse with exit 2", () => {
  const c = gpuwb(
    ["vm", "create", "lambda", "--type", "gpu_1x_a10", "--region", "us-east-1", "--name", "n"],
    authed,
    "",
  );
  assert.equal(c.code, 2);
  assert.match(c.stderr, /needs confirmation: stdin is not a terminal\. Pass --yes/);
  for (const action of ["stop", "terminate"]) {
    const r = gpuwb(["vm", action, "linode", "123"], authed, "");
    assert.equal(r.code, 2, action);
    assert.match(r.stderr, new RegExp(`Pass --yes to ${action} it non-interactively`));
  }
  assert.equal(gpuwb(["vm", "--help"]).code, 0);
});

test("without a usable Python, vm list exits 3", () => {
  const r = gpuwb(["--python", "/nonexistent/python3", "vm", "list"]);
  assert.equal(r.code, 3);
});

// ---- providers ----

test("vm providers shows every provider; the environment's tokens configure lambda and linode", (t) => {
  if (needBackend(t)) return;
  const bare = JSON.parse(gpuwb(["vm", "providers", "--json"]).stdout) as {
    providers: { name: string; configured: boolean; credentialFields: string[] }[];
  };
  const names = bare.providers.map((p) => p.name);
  for (const n of ["local", "lambda", "linode"]) assert.ok(names.includes(n), `${n} in ${names}`);
  const lambda = bare.providers.find((p) => p.name === "lambda");
  const linode = bare.providers.find((p) => p.name === "linode");
  assert.equal(lambda?.configured, false);
  assert.deepEqual(lambda?.credentialFields, ["apiKey"], "GPUWB_LAMBDA_API_KEY fills apiKey");
  assert.deepEqual(linode?.credentialFields, ["apiToken"], "GPUWB_LINODE_API_TOKEN fills apiToken");
  const withEnv = gpuwb(["vm", "providers", "--json"], authed);
  const configured = JSON.parse(withEnv.stdout).providers.filter((p: { configured: boolean }) => p.configured);
  assert.ok(configured.some((p: { name: string }) => p.name === "lambda"));
  assert.ok(configured.some((p: { name: string }) => p.name === "linode"));
  noSecrets(withEnv);
  const table = gpuwb(["vm", "providers"], authed);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^NAME\s+AVAILABLE\s+CONFIGURED\s+CAPABILITIES\s+REASON$/m);
  assert.match(table.stdout, /^linode\s+yes\s+yes\s+offerings,create,start,stop,terminate/m);
  assert.match(table.stdout, /Stopped machines are still billed on: .*Linode/);
  noSecrets(table);
});

// ---- offerings ----

test("vm offerings: cheapest first, capacity per region, --gpu filters, unknown prices say so", (t) => {
  if (needClouds(t)) return;
  const r = gpuwb(["vm", "offerings", "lambda"], authed);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split("\n");
  assert.match(lines[0] as string, /^TYPE\s+GPU\s+COUNT\s+GPU MEM\s+VCPU\s+RAM\s+\$\/H\s+SPOT \$\/H\s+REGIONS$/);
  assert.match(
    lines[1] as string,
    /^gpu_1x_a10\s+A10\s+1\s+24 GiB\s+30\s+200 GiB\s+\$0\.75\s+—\s+us-east-1,us-west-1$/,
  );
  assert.match(
    lines[2] as string,
    /^gpu_8x_a100_80gb_sxm4\s+A100\s+8\s+80 GiB\s+240\s+1800 GiB\s+\$14\.32\s+—\s+none now$/,
  );
  noSecrets(r);
  const a100 = gpuwb(["vm", "offerings", "lambda", "--gpu", "a100", "--json"], authed);
  assert.equal(a100.code, 0, a100.stderr);
  const offerings = JSON.parse(a100.stdout).offerings as { instanceType: string; pricePerHour: number }[];
  assert.deepEqual(
    offerings.map((o) => o.instanceType),
    ["gpu_8x_a100_80gb_sxm4"],
  );
  assert.equal(offerings[0]?.pricePerHour, 14.32);
  const none = gpuwb(["vm", "offerings", "lambda", "--gpu", "H200"], authed);
  assert.equal(none.code, 0);
  assert.match(none.stdout, /No lambda offerings with a GPU matching "H200"/);

  // Linode: the RTX 4000 has no base price (only a Chicago one): unknown there, never $0.
  const lin = gpuwb(["vm", "offerings", "linode", "--region", "us-southeast"], authed);
  assert.equal(lin.code, 0, lin.stderr);
  assert.match(lin.stdout, /^g1-gpu-rtx6000-1\s+RTX6000\s+1\s+—\s+8\s+32 GiB\s+\$1\.65\s/m);
  assert.match(lin.stdout, /^g2-gpu-rtx4000a1-s\s+.*\s+unknown\s/m);
  assert.doesNotMatch(lin.stdout, /\$0\.00/);
  assert.match(lin.stdout, /unknown: the provider reported no price/);
  const rows = lin.stdout.split("\n").filter((l) => l.startsWith("g"));
  assert.ok(rows[0]?.startsWith("g1-"), "known prices sort before unknown ones");
});

// ---- lifecycle ----

function listJson(provider: string, extra: NodeJS.ProcessEnv = authed) {
  const r = gpuwb(["vm", "list", "--provider", provider, "--json"], extra);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as { vms: Vm[]; errors: unknown[] };
}

type Vm = {
  provider: string;
  id: string;
  name: string;
  state: string;
  pricePerHour: number | null;
  accruedCost: number | null;
  tags: Record<string, string>;
  managed: boolean;
};

test("Lambda: create (price shown first) → list → stop refused → terminate", (t) => {
  if (needClouds(t)) return;
  const c = gpuwb(
    ["vm", "create", "lambda", "--type", "gpu_1x_a10", "--region", "us-east-1", "--name", "cli-lambda"].concat([
      "--ssh-key",
      "laptop",
      "--yes",
      "--json",
    ]),
    authed,
  );
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stderr, /gpu_1x_a10 "cli-lambda" on lambda in us-east-1: \$0\.75\/h/);
  noSecrets(c);
  const vm = JSON.parse(c.stdout) as Vm;
  assert.equal(vm.provider, "lambda");
  assert.equal(vm.name, "cli-lambda");
  assert.equal(vm.pricePerHour, 0.75);

  const table = gpuwb(["vm", "list", "--provider", "lambda"], authed);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^PROVIDER\s+NAME\s+ID\s+STATE\s+TYPE\s+GPU\s+REGION\s+\$\/H\s+UPTIME\s+ACCRUED$/m);
  const row = table.stdout.split("\n").find((l) => l.includes(vm.id)) as string;
  assert.match(
    row,
    /^lambda\s+cli-lambda\s+[0-9a-f]{32}\s+(running|pending)\s+gpu_1x_a10\s+A10\s+us-east-1\s+\$0\.75\s/,
  );
  assert.match(row, /\$\d+\.\d+$/, "accrued cost from the ledger");
  assert.match(table.stdout, /1 machine: /);

  const stop = gpuwb(["vm", "stop", "lambda", vm.id, "--yes"], authed);
  assert.equal(stop.code, 1);
  assert.match(stop.stderr, /Lambda Cloud cannot stop/);

  const term = gpuwb(["vm", "terminate", "lambda", "cli-lambda", "--yes"], authed);
  assert.equal(term.code, 0, term.stderr);
  assert.match(term.stderr, /cli-lambda \([0-9a-f]{32}\) on lambda: \w+, \$0\.75\/h, accrued \$/);
  assert.match(term.stdout, /^Terminated cli-lambda \([0-9a-f]{32}\) on lambda: terminated\.$/m);
  const after = listJson("lambda").vms.find((v) => v.id === vm.id);
  assert.ok(!after || after.state === "terminated", JSON.stringify(after));
  noSecrets(term);
});

test("Linode: create → stop (warns that stopped Linodes are billed) → start → terminate", (t) => {
  if (needClouds(t)) return;
  const c = gpuwb(
    ["vm", "create", "linode", "--type", "g1-gpu-rtx6000-1", "--region", "us-southeast", "--name", "cli-linode"].concat(
      ["--ssh-key", "laptop", "--tag", "team=ml", "--yes"],
    ),
    authed,
  );
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stderr, /on linode in us-southeast: \$1\.65\/h/);
  assert.match(c.stdout, /^Created cli-linode \((\d+)\) on linode: \w+, \$1\.65\/h\.$/m);
  const id = /\((\d+)\)/.exec(c.stdout)?.[1] as string;
  const vm = listJson("linode").vms.find((v) => v.id === id) as Vm;
  assert.equal(vm.tags.team, "ml");
  assert.ok(vm.managed, "created here: managed");

  const stop = gpuwb(["vm", "stop", "linode", id, "--yes"], authed);
  assert.equal(stop.code, 0, stop.stderr);
  assert.match(stop.stderr, /Warning: stopping does not end billing on linode/);
  assert.match(stop.stdout, /^Stopped cli-linode/m);
  // The fake finishes shutting down on the next read.
  listJson("linode");
  const stopped = listJson("linode").vms.find((v) => v.id === id) as Vm;
  assert.equal(stopped.state, "stopped");
  const table = gpuwb(["vm", "list", "--provider", "linode"], authed);
  assert.match(table.stdout, /1 stopped machine still billed \(linode bills stopped machines\)/);

  const start = gpuwb(["vm", "start", "linode", id], authed);
  assert.equal(start.code, 0, start.stderr);
  assert.match(start.stdout, /^Started cli-linode/m);

  const term = gpuwb(["vm", "terminate", "linode", id, "--yes", "--json"], authed);
  assert.equal(term.code, 0, term.stderr);
  assert.equal((JSON.parse(term.stdout) as Vm).state, "terminated");
  const gone = gpuwb(["vm", "terminate", "linode", id, "--yes"], authed);
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /no machine ".*" on linode|terminated/);
});

test("Linode at an unknown price: $/h and accrued say unknown, never $0", (t) => {
  if (needClouds(t)) return;
  const c = gpuwb(
    [
      "vm",
      "create",
      "linode",
      "--type",
      "g2-gpu-rtx4000a1-s",
      "--region",
      "us-southeast",
      "--name",
      "cli-noprice",
    ].concat(["--ssh-key", "laptop", "--yes"]),
    authed,
  );
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stderr, /: unknown/);
  listJson("linode"); // the fake boots it on this read
  const table = gpuwb(["vm", "list", "--provider", "linode"], authed);
  const row = table.stdout.split("\n").find((l) => l.includes("cli-noprice")) as string;
  assert.match(row, /\sunknown\s.*unknown$/);
  assert.match(table.stdout, /at an unknown price/);
});

test("AWS (moto): create with a public key and tags → list → stop → start → terminate", (t) => {
  if (needAws(t)) return;
  // A well-formed ed25519 public key (random bytes; never used to log in).
  const blob = Buffer.concat([
    Buffer.from([0, 0, 0, 11]),
    Buffer.from("ssh-ed25519"),
    Buffer.from([0, 0, 0, 32]),
    Buffer.alloc(32, 7),
  ]);
  const pub = path.join(work, "id_test.pub");
  writeFileSync(pub, `ssh-ed25519 ${blob.toString("base64")} test@gpuwb\n`);
  const c = gpuwb(
    ["vm", "create", "aws", "--type", "g5.xlarge", "--region", "us-east-1", "--name", "cli-aws"].concat([
      "--ssh-public-key",
      pub,
      "--tag",
      "team=ml",
      "--tag",
      "run=7",
      "--yes",
      "--json",
    ]),
  );
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stderr, /g5\.xlarge "cli-aws" on aws in us-east-1: \$\d+\.\d+\/h/);
  const vm = JSON.parse(c.stdout) as Vm;
  assert.match(vm.id, /^i-/);
  assert.equal(vm.tags.team, "ml");
  assert.equal(vm.tags.run, "7");

  const list = gpuwb(["vm", "list", "--provider", "aws"]);
  assert.equal(list.code, 0, list.stderr);
  assert.match(
    list.stdout,
    new RegExp(`^aws\\s+cli-aws\\s+${vm.id}\\s+running\\s+g5\\.xlarge\\s+NVIDIA A10G\\s+us-east-1`, "m"),
  );

  const stop = gpuwb(["vm", "stop", "aws", vm.id, "--yes"]);
  assert.equal(stop.code, 0, stop.stderr);
  assert.doesNotMatch(stop.stderr, /does not end billing/, "a stopped EC2 instance is not billed for compute");
  assert.match(stop.stdout, /^Stopped cli-aws/m);
  const start = gpuwb(["vm", "start", "aws", "cli-aws", "--json"]);
  assert.equal(start.code, 0, start.stderr);
  assert.equal((JSON.parse(start.stdout) as Vm).id, vm.id, "found by name");
  const term = gpuwb(["vm", "terminate", "aws", vm.id, "--yes"]);
  assert.equal(term.code, 0, term.stderr);
  assert.match(term.stdout, /^Terminated cli-aws/m);
});

// ---- cost ----

test("vm cost: total, burn rate, by provider, day and machine; budgets; unknown prices", (t) => {
  if (needClouds(t)) return;
  const j = gpuwb(["vm", "cost", "--json", "--days", "7", "--daily-budget", "0.0001", "--monthly-budget", "100000"]);
  assert.equal(j.code, 0, j.stderr);
  const c = JSON.parse(j.stdout) as {
    total: number;
    byProvider: { key: string; cost: number }[];
    byVm: { label: string; unknownHours: number; cost: number }[];
    budgets: { period: string; level: string }[];
  };
  assert.ok(c.total > 0, "machines above have run at known prices");
  assert.ok(c.byProvider.some((p) => p.key === "linode"));
  const noprice = c.byVm.find((v) => v.label === "cli-noprice");
  assert.ok(noprice && noprice.unknownHours > 0 && noprice.cost === 0, JSON.stringify(noprice));
  assert.deepEqual(
    c.budgets.map((b) => [b.period, b.level]),
    [
      ["daily", "over"],
      ["monthly", "ok"],
    ],
  );
  const r = gpuwb(["vm", "cost", "--days", "7", "--daily-budget", "0.0001"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Since \d{4}-\d\d-\d\d \(7 days\): \$\d+\.\d+ \+ unknown$/m);
  assert.match(r.stdout, /machine-hours at an unknown price are not counted/);
  assert.match(r.stdout, /^Burn rate: \$\d+\.\d+\/h/m);
  assert.match(r.stdout, /^\s+daily\s+\$\S+\s+of \$0\.0001\s+\d+%\s+OVER BUDGET$/m);
  assert.match(r.stdout, /By provider:\n\s+PROVIDER\s+HOURS\s+COST/);
  assert.match(r.stdout, /By day \(UTC\):/);
  assert.match(r.stdout, /^\s+cli-noprice\s+\S+\s+unknown$/m, "unknown, never $0");
});

// ---- errors ----

test("a bad token: exit 1 with the CLI's hint, and the token is never echoed", (t) => {
  if (needClouds(t)) return;
  const bad = { GPUWB_LAMBDA_API_KEY: BAD_TOKEN, GPUWB_LINODE_API_TOKEN: BAD_TOKEN };
  const list = gpuwb(["vm", "list", "--provider", "linode"], bad);
  assert.equal(list.code, 1);
  assert.match(list.stdout, /Errors:\n\s+linode: .*401/);
  assert.match(list.stdout, /set GPUWB_LINODE_API_TOKEN/);
  noSecrets(list);
  const json = gpuwb(["vm", "list", "--provider", "linode", "--provider", "local", "--json"], bad);
  assert.equal(json.code, 1);
  const parsed = JSON.parse(json.stdout) as { vms: Vm[]; errors: { provider: string; kind: string }[] };
  assert.deepEqual(
    parsed.errors.map((e) => [e.provider, e.kind]),
    [["linode", "ProviderAuth"]],
  );
  assert.ok(
    parsed.vms.some((v) => v.provider === "local"),
    "one provider failing does not hide the others",
  );
  noSecrets(json);
  const off = gpuwb(["vm", "offerings", "lambda"], bad);
  assert.equal(off.code, 1);
  assert.match(off.stderr, /rejected the credentials.*From the command line, set GPUWB_LAMBDA_API_KEY\./);
  noSecrets(off);
  const create = gpuwb(
    [
      "vm",
      "create",
      "lambda",
      "--type",
      "gpu_1x_a10",
      "--region",
      "us-east-1",
      "--name",
      "x",
      "--ssh-key",
      "laptop",
    ].concat(["--yes"]),
    bad,
  );
  assert.equal(create.code, 1);
  noSecrets(create);
  // Without the variable: not configured, and the hint names it.
  const unset = gpuwb(["vm", "list", "--provider", "lambda"]);
  assert.equal(unset.code, 1);
  assert.match(unset.stdout, /GPUWB_LAMBDA_API_KEY/);
  assert.match(gpuwb(["vm", "providers"]).stdout, /^lambda\s+no\s+no\s+.*Set GPUWB_LAMBDA_API_KEY/m);
});

test("an error that echoes the token is redacted before it is printed", async (t) => {
  if (needClouds(t)) return;
  const base = new URL(env.GPUWB_LAMBDA_API_URL as string);
  await fetch(`${base.origin}/_admin/fault`, {
    method: "POST",
    body: JSON.stringify({ endpoint: "GET /instances", status: 400, echo_token: true, times: 5 }),
  });
  const r = gpuwb(["vm", "list", "--provider", "lambda"], authed);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /Errors:\n\s+lambda: /);
  noSecrets(r);
  const j = gpuwb(["vm", "list", "--provider", "lambda", "--json"], authed);
  noSecrets(j);
  await fetch(`${base.origin}/_admin/reset`, { method: "POST" });
});

// ---- confirmation on a terminal (util-linux `script` gives the CLI a pseudo-terminal) ----

const hasScript = spawnSync("script", ["--version"]).status === 0;

/** Run the CLI on a pseudo-terminal, typing `typed`; returns the exit code and the screen. */
function onTerminal(args: string[], typed: string) {
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const cmd = [process.execPath, cli, "--data-dir", dataDir, ...args].map(quote).join(" ");
  const r = spawnSync("script", ["-qec", cmd, "/dev/null"], {
    encoding: "utf8",
    timeout: 90_000,
    cwd: work,
    env: { ...env, ...authed },
    input: typed,
  });
  return { code: r.status, screen: r.stdout + r.stderr };
}

test("on a terminal, create shows the price and asks; no creates nothing, yes creates", async (t) => {
  if (needClouds(t)) return;
  if (!hasScript) {
    t.skip("util-linux script is not installed");
    return;
  }
  const args = ["vm", "create", "lambda", "--type", "gpu_1x_a10", "--region", "us-west-1", "--name", "cli-tty"].concat([
    "--ssh-key",
    "laptop",
  ]);
  const no = onTerminal(args, "n\n");
  assert.equal(no.code, 1, no.screen);
  assert.match(no.screen, /Create gpu_1x_a10 "cli-tty" on lambda in us-west-1 at \$0\.75\/h\? \[y\/N\]/);
  assert.match(no.screen, /Aborted; nothing was changed\./);
  const base = new URL(env.GPUWB_LAMBDA_API_URL as string);
  const state = async () =>
    ((await (await fetch(`${base.origin}/_admin/state`)).json()) as { instances: { name: string; status: string }[] })
      .instances;
  assert.ok(!(await state()).some((i) => i.name === "cli-tty"), "nothing launched after no");

  const yes = onTerminal(args, "y\n");
  assert.equal(yes.code, 0, yes.screen);
  assert.match(yes.screen, /Created cli-tty \([0-9a-f]{32}\) on lambda/);
  assert.ok((await state()).some((i) => i.name === "cli-tty"));
  noSecrets({ stdout: yes.screen, stderr: "" });

  const keep = onTerminal(["vm", "terminate", "lambda", "cli-tty"], "\n");
  assert.equal(keep.code, 1, keep.screen);
  assert.match(keep.screen, /accrued \$\S+\r?\nTerminate cli-tty .*Its disk and data are deleted\. \[y\/N\]/);
  const term = onTerminal(["vm", "terminate", "lambda", "cli-tty"], "yes\n");
  assert.equal(term.code, 0, term.screen);
  assert.match(term.screen, /Terminated cli-tty/);
});
