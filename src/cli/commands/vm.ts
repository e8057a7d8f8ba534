/**
 * `gpuwb vm …`: GPU machines from the terminal: providers, offerings with prices, the
 * machines of every provider in one table, create / start / stop / terminate with the price
 * shown and confirmed first, and what they cost.
 *
 * The CLI has no SecretStorage: API credentials come from environment variables
 * (GPUWB_LAMBDA_API_KEY, GPUWB_LINODE_API_TOKEN) and travel per request in `credentials`.
 * They are never printed; any message that would contain one is redacted. AWS uses its own
 * credential chain (AWS_PROFILE, ~/.aws/credentials, AWS_ACCESS_KEY_ID…).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { RequestType } from "vscode-jsonrpc";
import * as proto from "../../protocol";
import type { Parsed } from "../args";
import { type Command, CommandError, EXIT, JSON_OPTION, type Output } from "../command";
import type { Backend } from "../connection";
import { promptLine } from "../prompt";
import { cliRequest } from "../request";

// ---- credentials ----

/** Environment variables the CLI reads credentials from: provider and credential field. */
export const CREDENTIAL_ENV: readonly { env: string; provider: string; field: string }[] = [
  { env: "GPUWB_LAMBDA_API_KEY", provider: "lambda", field: "apiKey" },
  { env: "GPUWB_LINODE_API_TOKEN", provider: "linode", field: "apiToken" },
];

const CREDENTIALS_HELP = [
  "Credentials (the CLI has no keychain; they are sent per request and never printed):",
  "  GPUWB_LAMBDA_API_KEY    Lambda Cloud API key",
  "  GPUWB_LINODE_API_TOKEN  Linode (Akamai) personal access token",
  "  AWS                     the usual chain: AWS_PROFILE, ~/.aws/credentials, AWS_ACCESS_KEY_ID…",
];

const CREDENTIALS_SEE = "Credentials come from the environment: see gpuwb vm providers --help.";

type Credentials = Record<string, Record<string, string>>;

function envCredentials(env: NodeJS.ProcessEnv = process.env): Credentials {
  const creds: Credentials = {};
  for (const { env: name, provider, field } of CREDENTIAL_ENV) {
    const value = env[name]?.trim();
    if (value) creds[provider] = { ...(creds[provider] ?? {}), [field]: value };
  }
  return creds;
}

/** For an auth failure: which environment variable the CLI reads that provider's key from. */
export function cliCredentialHint(provider: string | undefined): string {
  const entry = CREDENTIAL_ENV.find((c) => c.provider === provider);
  return entry ? `From the command line, set ${entry.env}.` : "";
}

/** A hint for the terminal: the extension's command names mean nothing here. */
function cliHint(provider: string | undefined, kind: string | undefined, hint: string | null | undefined): string {
  const extensionOnly = /Set Provider Credentials/.test(hint ?? "");
  const extra = kind === "ProviderAuth" || extensionOnly ? cliCredentialHint(provider) : "";
  if (extra && extensionOnly) return extra;
  return [hint ?? "", extra].filter(Boolean).join(" ");
}

/** Every credential value in the environment, longest first (for redaction). */
function secrets(): string[] {
  return CREDENTIAL_ENV.map((c) => process.env[c.env]?.trim() ?? "")
    .filter((v) => v.length >= 4)
    .sort((a, b) => b.length - a.length);
}

/** Text with every credential value replaced, so no message can echo a token. */
export function redact(text: string): string {
  let t = text;
  for (const s of secrets()) t = t.split(s).join("***");
  return t;
}

// ---- requests ----

/** A backend error as a CommandError with its hint (provider failures are expected, not bugs). */
function asCommandError(e: unknown, provider: string | undefined): unknown {
  const data = proto.errorData(e);
  if (!data || data.kind === "Internal") return e instanceof Error ? new Error(redact(e.message)) : e;
  const message = e instanceof Error ? e.message : String(e);
  const hint = cliHint(provider, data.kind, data.hint);
  const text = `${message.replace(/\.?$/, ".")}${hint ? ` ${hint}` : ""}`;
  return new CommandError(redact(text), EXIT.failed);
}

interface RequestOptions {
  /** Show the backend's progress on one stderr line (only when stderr is a terminal). */
  progress?: boolean;
  /** Ctrl+C sends $/cancelRequest; the request then fails with `cancelledMessage`. */
  cancellable?: string;
}

function request<P extends object, R>(
  backend: Backend,
  type: RequestType<P, R, void>,
  params: P,
  out: Output,
  opts: RequestOptions = {},
): Promise<R> {
  return cliRequest(backend, type, params, out, {
    ...opts,
    redact,
    asError: (e) => asCommandError(e, (params as { provider?: string }).provider),
  });
}

// ---- formatting ----

/** Rows as aligned columns; `right` marks the columns to right-align (numbers). */
function table(rows: string[][], right: ReadonlySet<number> = new Set()): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  return rows
    .map((r) =>
      r
        .map((c, i) => (right.has(i) ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/** `$1.23`; small amounts keep their significant digits (`$0.0042`). Never for unknown. */
export function money(n: number): string {
  if (n !== 0 && Math.abs(n) < 0.01) return `$${n.toFixed(4)}`;
  return `$${n.toFixed(2)}`;
}

/** A price per hour, or "unknown" (a missing price is never shown as $0). */
export function pricePerHour(p: number | null | undefined): string {
  return p === null || p === undefined ? "unknown" : `${money(p)}/h`;
}

/** A cost entry: `$12.34`, `$12.34 + unknown` (some hours at an unknown price) or `unknown`. */
export function entryCost(e: Pick<proto.VmCostEntry, "cost" | "unknownHours">): string {
  if (e.unknownHours > 0) return e.cost > 0 ? `${money(e.cost)} + unknown` : "unknown";
  return money(e.cost);
}

function hours(h: number): string {
  return h >= 100 ? h.toFixed(0) : h >= 10 ? h.toFixed(1) : h.toFixed(2);
}

/** `42s`, `17m`, `3h 05m`, `2d 4h`. */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

function gpu(model: string | null, count: number): string {
  if (!model && !count) return "—";
  return count > 1 ? `${count}× ${model ?? "GPU"}` : (model ?? `${count} GPU`);
}

function num(v: number | null, suffix = ""): string {
  if (v === null) return "—";
  return `${Number.isInteger(v) ? v : Number(v.toFixed(1))}${suffix}`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function vmLabel(vm: proto.VmInfo): string {
  return vm.name && vm.name !== vm.id ? `${vm.name} (${vm.id})` : vm.id;
}

// ---- argument checks ----

function positiveNumber(value: string | boolean | undefined, option: string, integer: boolean): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  const ok = typeof value === "string" && Number.isFinite(n) && n > 0 && (!integer || Number.isInteger(n));
  if (!ok) throw new CommandError(`${option} must be a ${integer ? "whole number" : "number"} above 0`, EXIT.usage);
  return n;
}

function readFileArg(option: string, file: string): string {
  try {
    return fs.readFileSync(path.resolve(file), "utf8");
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message;
    throw new CommandError(`cannot read ${option} ${file}: ${why}`, EXIT.usage);
  }
}

function tags(args: Parsed): Record<string, string> {
  const result: Record<string, string> = {};
  for (const t of args.lists?.tag ?? []) {
    const eq = t.indexOf("=");
    if (eq <= 0) throw new CommandError(`--tag takes KEY=VALUE (got "${t}")`, EXIT.usage);
    result[t.slice(0, eq)] = t.slice(eq + 1);
  }
  return result;
}

function providerName(args: Parsed): string {
  return (args.positionals[0] as string).toLowerCase();
}

const interactive = () => process.stdin.isTTY === true;

/**
 * Confirm on a terminal unless --yes. Without a terminal and without --yes, refuse (exit 2):
 * a script must say --yes for anything that spends or destroys.
 */
async function confirm(args: Parsed, question: string, what: string): Promise<void> {
  if (args.options.yes === true) return;
  if (!interactive()) {
    throw new CommandError(
      `${what} needs confirmation: stdin is not a terminal. Pass --yes to confirm non-interactively.`,
      EXIT.usage,
    );
  }
  const answer = await promptLine(`${question} [y/N] `, false);
  if (!/^y(es)?$/i.test((answer ?? "").trim())) throw new CommandError("Aborted; nothing was changed.", EXIT.failed);
}

const YES_OPTION = { name: "yes", help: "do not ask for confirmation (required when stdin is not a terminal)" };

// ---- providers ----

/** Why a provider is unavailable, in terms of the CLI (credentials come from the environment). */
function providerReason(p: proto.VmProviderInfo): string {
  const entry = CREDENTIAL_ENV.find((c) => c.provider === p.name);
  if (entry && !p.configured) return `Set ${entry.env} to use ${p.displayName || p.name}.`;
  return p.reason ?? "";
}

function renderProviders(providers: proto.VmProviderInfo[]): string {
  const rows = [["NAME", "AVAILABLE", "CONFIGURED", "CAPABILITIES", "REASON"]];
  for (const p of providers) {
    rows.push([
      p.name,
      p.available ? "yes" : "no",
      p.configured ? "yes" : "no",
      p.capabilities.join(",") || "—",
      providerReason(p),
    ]);
  }
  const lines = [table(rows)];
  const billed = providers.filter((p) => p.stopKeepsBilling).map((p) => p.displayName || p.name);
  if (billed.length) lines.push("", `Stopped machines are still billed on: ${billed.join(", ")}.`);
  return lines.join("\n");
}

export const vmProvidersCommand: Command = {
  name: "vm providers",
  summary: "The machine providers: available here, configured, and what each can do.",
  usage: ["gpuwb vm providers [--json]", "", ...CREDENTIALS_HELP].join("\n"),
  options: [JSON_OPTION],
  async run(backend, _args, out) {
    const result = await request(backend, proto.vmProviders, { credentials: envCredentials() }, out);
    if (out.json) out.printJson(result);
    else out.print(renderProviders(result.providers));
    return EXIT.ok;
  },
};

// ---- offerings ----

/** Cheapest first (unknown prices last), then by type. */
function byPrice(a: proto.VmOffering, b: proto.VmOffering): number {
  const pa = a.pricePerHour ?? Number.POSITIVE_INFINITY;
  const pb = b.pricePerHour ?? Number.POSITIVE_INFINITY;
  return pa - pb || a.instanceType.localeCompare(b.instanceType);
}

function regionsWithCapacity(o: proto.VmOffering): string {
  const now = o.regions.filter((r) => r.available === true).map((r) => r.name);
  const maybe = o.regions.filter((r) => r.available === null).map((r) => `${r.name}?`);
  const all = [...now, ...maybe];
  if (!all.length) return o.regions.length ? "none now" : "—";
  return all.length > 4 ? `${all.slice(0, 4).join(",")} +${all.length - 4}` : all.join(",");
}

function renderOfferings(offerings: proto.VmOffering[], provider: string, gpuFilter: string | undefined): string {
  if (!offerings.length) {
    return gpuFilter ? `No ${provider} offerings with a GPU matching "${gpuFilter}".` : `No ${provider} offerings.`;
  }
  const rows = [["TYPE", "GPU", "COUNT", "GPU MEM", "VCPU", "RAM", "$/H", "SPOT $/H", "REGIONS"]];
  for (const o of offerings) {
    rows.push([
      o.instanceType,
      o.gpuModel ?? "—",
      String(o.gpuCount),
      num(o.gpuMemoryGiB, " GiB"),
      num(o.vcpus),
      num(o.ramGiB, " GiB"),
      o.pricePerHour === null ? "unknown" : money(o.pricePerHour),
      o.spotPricePerHour === null ? "—" : money(o.spotPricePerHour),
      regionsWithCapacity(o),
    ]);
  }
  const lines = [table(rows, new Set([2, 3, 4, 5, 6, 7]))];
  const notes: string[] = [];
  const tables = [...new Set(offerings.map((o) => o.priceSource))].filter((s) => s !== "api" && s !== "unknown");
  if (tables.length) notes.push(`Prices from a built-in ${tables.join(", ")}, not the provider's API.`);
  if (offerings.some((o) => o.pricePerHour === null)) notes.push("unknown: the provider reported no price.");
  if (offerings.some((o) => o.regions.some((r) => r.available === null))) {
    notes.push("region?: the provider does not report capacity there.");
  }
  if (notes.length) lines.push("", ...notes);
  return lines.join("\n");
}

export const vmOfferingsCommand: Command = {
  name: "vm offerings",
  summary: "Machine types a provider offers, cheapest first: GPUs, memory, $/h, spot $/h, regions with capacity.",
  usage: ["gpuwb vm offerings PROVIDER [--region R] [--gpu MODEL] [--json]", "", CREDENTIALS_SEE].join("\n"),
  positionals: [1, 1],
  options: [
    { name: "region", takesValue: true, valueName: "R", help: "only this region" },
    { name: "gpu", takesValue: true, valueName: "MODEL", help: "only GPUs whose model contains MODEL, e.g. A100" },
    JSON_OPTION,
  ],
  async run(backend, args, out) {
    const provider = providerName(args);
    const region = typeof args.options.region === "string" ? args.options.region : undefined;
    const gpuFilter = typeof args.options.gpu === "string" ? args.options.gpu : undefined;
    const result = await request(
      backend,
      proto.vmOfferings,
      { provider, credentials: envCredentials(), ...(region ? { region } : {}) },
      out,
      { progress: true },
    );
    const wanted = gpuFilter?.toLowerCase();
    const offerings = result.offerings
      .filter((o) => !wanted || (o.gpuModel ?? "").toLowerCase().includes(wanted))
      .sort(byPrice);
    if (out.json) out.printJson({ offerings });
    else out.print(renderOfferings(offerings, provider, gpuFilter));
    return EXIT.ok;
  },
};

// ---- list ----

function uptime(vm: proto.VmInfo, now: number): string {
  if (vm.state !== "running" || vm.launchedAt === null) return "—";
  return duration(now - vm.launchedAt);
}

export function renderVmList(result: proto.VmListResult, now = Date.now() / 1000): string {
  const lines: string[] = [];
  if (result.vms.length) {
    const rows = [["PROVIDER", "NAME", "ID", "STATE", "TYPE", "GPU", "REGION", "$/H", "UPTIME", "ACCRUED"]];
    for (const vm of result.vms) {
      rows.push([
        vm.provider,
        vm.name || "—",
        vm.id,
        vm.state,
        `${vm.instanceType ?? "—"}${vm.spot ? " (spot)" : ""}`,
        gpu(vm.gpuModel, vm.gpuCount),
        vm.region ?? "—",
        vm.pricePerHour === null ? "unknown" : money(vm.pricePerHour),
        uptime(vm, now),
        vm.accruedCost === null ? "unknown" : money(vm.accruedCost),
      ]);
    }
    lines.push(table(rows, new Set([7, 8, 9])));
    const running = result.vms.filter((v) => v.state === "running");
    const known = running.filter((v) => v.pricePerHour !== null);
    const burn = known.reduce((s, v) => s + (v.pricePerHour ?? 0), 0);
    const states = ["running", "pending", "stopping", "stopped", "terminated", "unknown"]
      .map((st) => [st, result.vms.filter((v) => v.state === st).length] as const)
      .filter(([st, n]) => n > 0 || st === "running")
      .map(([st, n]) => `${n} ${st}`);
    let summary = `${plural(result.vms.length, "machine")}: ${states.join(", ")}`;
    if (running.length) summary += `; running ${money(burn)}/h`;
    if (known.length < running.length) summary += ` + ${running.length - known.length} at an unknown price`;
    const billedStopped = result.vms.filter((v) => v.state === "stopped" && v.stopKeepsBilling);
    if (billedStopped.length) {
      summary += `; ${plural(billedStopped.length, "stopped machine")} still billed (${billedStopped
        .map((v) => v.provider)
        .filter((p, i, a) => a.indexOf(p) === i)
        .join(", ")} bills stopped machines)`;
    }
    lines.push("", `${summary}.`);
  } else {
    lines.push("No machines.");
  }
  if (result.errors.length) {
    lines.push("", "Errors:");
    for (const e of result.errors) {
      lines.push(`  ${e.provider}: ${e.message}`);
      const hint = cliHint(e.provider, e.kind, e.hint);
      if (hint) lines.push(`    ${hint}`);
    }
  }
  return redact(lines.join("\n"));
}

export const vmListCommand: Command = {
  name: "vm list",
  summary: "Machines of every available provider (or --provider P…): state, $/h, uptime, accrued cost.",
  usage: [
    "gpuwb vm list [--provider P]... [--json]",
    "",
    "A provider that fails is listed under Errors with a hint; the others are still shown.",
    "Exit code 1 when a provider named with --provider failed (without --provider, failures",
    "are listed, and in --json under errors, but do not change the exit code).",
    "",
    ...CREDENTIALS_HELP,
  ].join("\n"),
  options: [
    {
      name: "provider",
      takesValue: true,
      valueName: "P",
      repeatable: true,
      help: "only these providers (repeatable or comma-separated): local, ssh, aws, lambda, linode, skypilot",
    },
    JSON_OPTION,
  ],
  async run(backend, args, out) {
    const providers = (args.lists?.provider ?? [])
      .flatMap((p) => p.split(","))
      .map((p) => p.trim().toLowerCase())
      .filter(Boolean);
    const result = await request(
      backend,
      proto.vmList,
      { credentials: envCredentials(), ...(providers.length ? { providers } : {}) },
      out,
      { progress: true },
    );
    if (out.json) out.stdout.write(`${redact(JSON.stringify(result, null, 2))}\n`);
    else out.print(renderVmList(result));
    const failedNamed = result.errors.some((e) => providers.includes(e.provider));
    return failedNamed ? EXIT.failed : EXIT.ok;
  },
};

// ---- create ----

/** The offering's price for the request, or null when it cannot be found. */
async function offeredPrice(
  backend: Backend,
  out: Output,
  provider: string,
  instanceType: string,
  region: string,
  spot: boolean,
): Promise<{ price: number | null; note: string }> {
  let offerings: proto.VmOffering[];
  try {
    ({ offerings } = await request(
      backend,
      proto.vmOfferings,
      { provider, region, credentials: envCredentials() },
      out,
      { progress: true },
    ));
  } catch (e) {
    // A provider without a catalogue still creates; anything else (auth…) fails now.
    if (e instanceof CommandError && /cannot list offerings/i.test(e.message)) {
      return { price: null, note: "the provider lists no prices" };
    }
    throw e;
  }
  const o = offerings.find((x) => x.instanceType === instanceType);
  if (!o) {
    return { price: null, note: `${instanceType} is not in ${provider}'s offerings for ${region}` };
  }
  if (spot) {
    return o.spotPricePerHour !== null
      ? { price: o.spotPricePerHour, note: "spot price now; it can change, and spot machines can be reclaimed" }
      : { price: null, note: `no spot price known (on-demand is ${pricePerHour(o.pricePerHour)})` };
  }
  return { price: o.pricePerHour, note: o.priceSource === "api" ? "" : `price from ${o.priceSource}` };
}

export const vmCreateCommand: Command = {
  name: "vm create",
  summary: "Create a machine (shows the hourly price and asks first).",
  usage: [
    "gpuwb vm create PROVIDER --type T --region R --name N [--spot] [--image I] [--disk GiB]",
    "                [--ssh-key NAME | --ssh-public-key FILE] [--tag KEY=VALUE]... [--startup-script FILE] [--yes] [--json]",
    "",
    "The hourly price is printed first, then you are asked to confirm (on a terminal).",
    "Without a terminal, --yes is required. Ctrl+C while creating cancels the request;",
    "check `gpuwb vm list` afterwards, as the provider may already have started the machine.",
    CREDENTIALS_SEE,
  ].join("\n"),
  positionals: [1, 1],
  options: [
    { name: "type", takesValue: true, valueName: "T", help: "instance type (see gpuwb vm offerings PROVIDER)" },
    { name: "region", takesValue: true, valueName: "R", help: "region" },
    { name: "name", takesValue: true, valueName: "N", help: "machine name" },
    { name: "spot", help: "a spot (preemptible) machine where the provider has them" },
    { name: "image", takesValue: true, valueName: "I", help: "image (default: the provider's deep-learning image)" },
    { name: "disk", takesValue: true, valueName: "GiB", help: "boot disk size" },
    { name: "ssh-key", takesValue: true, valueName: "NAME", help: "an SSH key already registered with the provider" },
    { name: "ssh-public-key", takesValue: true, valueName: "FILE", help: "a public key file to install" },
    { name: "tag", takesValue: true, valueName: "KEY=VALUE", repeatable: true, help: "a tag (repeatable)" },
    { name: "startup-script", takesValue: true, valueName: "FILE", help: "a script to run at first boot" },
    YES_OPTION,
    JSON_OPTION,
  ],
  async run(backend, args, out) {
    const provider = providerName(args);
    const str = (k: string) => (typeof args.options[k] === "string" ? (args.options[k] as string) : undefined);
    const missing = ["type", "region", "name"].filter((k) => !str(k));
    if (missing.length) {
      throw new CommandError(
        `missing ${missing.map((m) => `--${m}`).join(", ")}. Usage: gpuwb vm create PROVIDER --type T --region R --name N`,
        EXIT.usage,
      );
    }
    if (str("ssh-key") && str("ssh-public-key")) {
      throw new CommandError("give --ssh-key or --ssh-public-key, not both", EXIT.usage);
    }
    const instanceType = str("type") as string;
    const region = str("region") as string;
    const name = str("name") as string;
    const spot = args.options.spot === true;
    const diskGiB = positiveNumber(args.options.disk, "--disk", true);
    const keyFile = str("ssh-public-key");
    const scriptFile = str("startup-script");
    const params: proto.VmCreateParams = {
      provider,
      name,
      instanceType,
      region,
      ...(spot ? { spot } : {}),
      ...(str("image") ? { image: str("image") } : {}),
      ...(diskGiB !== undefined ? { diskGiB } : {}),
      ...(str("ssh-key") ? { sshKeyName: str("ssh-key") } : {}),
      ...(keyFile ? { sshPublicKey: readFileArg("--ssh-public-key", keyFile).trim() } : {}),
      ...(scriptFile ? { startupScript: readFileArg("--startup-script", scriptFile) } : {}),
      tags: tags(args),
      credentials: envCredentials(),
    };
    // Refuse before asking any provider anything: a script must opt in with --yes.
    if (args.options.yes !== true && !interactive()) {
      throw new CommandError(
        "creating a machine needs confirmation: stdin is not a terminal. Pass --yes to create it non-interactively.",
        EXIT.usage,
      );
    }
    const { price, note } = await offeredPrice(backend, out, provider, instanceType, region, spot);
    const what = `${spot ? "spot " : ""}${instanceType} "${name}" on ${provider} in ${region}`;
    out.stderr.write(`${what}: ${pricePerHour(price)}${note ? ` (${note})` : ""}\n`);
    await confirm(args, `Create ${what} at ${pricePerHour(price)}?`, "creating a machine");
    const vm = await request(backend, proto.vmCreate, params, out, {
      progress: true,
      cancellable:
        "Cancelled. The provider may already have started the machine: check gpuwb vm list and terminate it if so.",
    });
    if (out.json) out.printJson(vm);
    else {
      out.print(`Created ${vmLabel(vm)} on ${vm.provider}: ${vm.state}, ${pricePerHour(vm.pricePerHour)}.`);
      if (vm.address) out.print(`Address: ${vm.address}`);
    }
    return EXIT.ok;
  },
};

// ---- start / stop / terminate ----

async function findVm(backend: Backend, out: Output, provider: string, id: string): Promise<proto.VmInfo> {
  const result = await request(backend, proto.vmList, { providers: [provider], credentials: envCredentials() }, out, {
    progress: true,
  });
  const mine = result.vms.filter((v) => v.provider === provider);
  const byId = mine.find((v) => v.id === id);
  if (byId) return byId;
  // By name: a terminated machine may share the name of a live one; prefer the live ones.
  const named = mine.filter((v) => v.name === id);
  const live = named.filter((v) => v.state !== "terminated");
  const candidates = live.length ? live : named;
  if (candidates.length > 1) {
    throw new CommandError(
      `${candidates.length} machines on ${provider} are named "${id}" (${candidates.map((v) => v.id).join(", ")}); give the id.`,
      EXIT.usage,
    );
  }
  if (candidates[0]) return candidates[0];
  const err = result.errors.find((e) => e.provider === provider);
  if (err) {
    const hint = cliHint(err.provider, err.kind, err.hint);
    throw new CommandError(redact(`${err.message}${hint ? ` ${hint}` : ""}`), EXIT.failed);
  }
  throw new CommandError(`no machine "${id}" on ${provider}. See gpuwb vm list --provider ${provider}.`, EXIT.failed);
}

function costLine(vm: proto.VmInfo): string {
  const accrued = vm.accruedCost === null ? "unknown" : money(vm.accruedCost);
  return `${vmLabel(vm)} on ${vm.provider}: ${vm.state}, ${pricePerHour(vm.pricePerHour)}, accrued ${accrued}`;
}

type Action = "start" | "stop" | "terminate";

const ACTIONS: Record<
  Action,
  { type: RequestType<proto.VmRefParams, proto.VmInfo, void>; done: string; summary: string }
> = {
  start: { type: proto.vmStart, done: "Started", summary: "Start a stopped machine (billing resumes)." },
  stop: {
    type: proto.vmStop,
    done: "Stopped",
    summary: "Stop a machine (asks first; on some providers, e.g. Linode, stopped machines are still billed).",
  },
  terminate: {
    type: proto.vmTerminate,
    done: "Terminated",
    summary: "Terminate a machine and its disk (asks first, showing what it has cost).",
  },
};

function actionCommand(action: Action): Command {
  const a = ACTIONS[action];
  return {
    name: `vm ${action}`,
    summary: a.summary,
    usage: [
      `gpuwb vm ${action} PROVIDER ID [${action === "start" ? "" : "--yes] ["}--json]`,
      "",
      `ID: the machine's id or name (gpuwb vm list).${action === "start" ? "" : " Without a terminal, --yes is required."}`,
      CREDENTIALS_SEE,
    ].join("\n"),
    positionals: [2, 2],
    options: action === "start" ? [JSON_OPTION] : [YES_OPTION, JSON_OPTION],
    async run(backend, args, out) {
      const provider = providerName(args);
      const ref = args.positionals[1] as string;
      if (action !== "start" && args.options.yes !== true && !interactive()) {
        throw new CommandError(
          `${action === "stop" ? "stopping" : "terminating"} a machine needs confirmation: stdin is not a terminal. Pass --yes to ${action} it non-interactively.`,
          EXIT.usage,
        );
      }
      const vm = await findVm(backend, out, provider, ref);
      out.stderr.write(`${costLine(vm)}\n`);
      if (action === "stop" && vm.stopKeepsBilling) {
        out.stderr.write(
          `Warning: stopping does not end billing on ${vm.provider}: a stopped machine is billed until it is terminated.\n`,
        );
      }
      if (action === "terminate") {
        await confirm(args, `Terminate ${vmLabel(vm)}? Its disk and data are deleted.`, "terminating a machine");
      } else if (action === "stop") {
        await confirm(args, `Stop ${vmLabel(vm)}?`, "stopping a machine");
      }
      const result = await request(backend, a.type, { provider, id: vm.id, credentials: envCredentials() }, out, {
        progress: true,
      });
      if (out.json) out.printJson(result);
      else out.print(`${a.done} ${vmLabel(result)} on ${result.provider}: ${result.state}.`);
      return EXIT.ok;
    },
  };
}

export const vmStartCommand = actionCommand("start");
export const vmStopCommand = actionCommand("stop");
export const vmTerminateCommand = actionCommand("terminate");

// ---- cost ----

function day(t: number): string {
  return new Date(t * 1000).toISOString().slice(0, 10);
}

export function renderCost(c: proto.VmCostResult, days: number): string {
  const lines: string[] = [];
  const total = entryCost({ cost: c.total, unknownHours: c.unknownHours });
  lines.push(`Since ${day(c.since)} (${plural(days, "day")}): ${total}`);
  if (c.unknownHours > 0) {
    lines.push(`  ${hours(c.unknownHours)} machine-hours at an unknown price are not counted in the total.`);
  }
  let burn = `Burn rate: ${money(c.burnRatePerHour)}/h`;
  if (c.burnUnknown > 0) burn += ` + ${plural(c.burnUnknown, "running machine")} at an unknown price`;
  lines.push(burn);
  if (c.budgets.length) {
    lines.push("", "Budgets:");
    const rows = c.budgets.map((b) => [
      b.period,
      money(b.spent),
      `of ${money(b.limit)}`,
      `${b.limit > 0 ? Math.round((b.spent / b.limit) * 100) : 0}%`,
      b.level === "over" ? "OVER BUDGET" : b.level === "warning" ? "warning (≥ 80%)" : "ok",
    ]);
    lines.push(
      ...table(rows, new Set([1, 3]))
        .split("\n")
        .map((l) => `  ${l}`),
    );
  }
  const section = (title: string, head: string, entries: proto.VmCostEntry[]) => {
    if (!entries.length) return;
    const rows = [[head, "HOURS", "COST"], ...entries.map((e) => [e.label || e.key, hours(e.hours), entryCost(e)])];
    lines.push(
      "",
      title,
      ...table(rows, new Set([1, 2]))
        .split("\n")
        .map((l) => `  ${l}`),
    );
  };
  section("By provider:", "PROVIDER", c.byProvider);
  section(
    "By day (UTC):",
    "DAY",
    c.byDay.filter((e) => e.hours > 0 || e.cost > 0),
  );
  section("By machine:", "MACHINE", c.byVm);
  if (!c.byVm.length && !c.byProvider.length) lines.push("", "No machine time recorded in this period.");
  return lines.join("\n");
}

export const vmCostCommand: Command = {
  name: "vm cost",
  summary: "What machines have cost (from the local ledger): total, burn rate, by provider, day and machine; budgets.",
  usage: [
    "gpuwb vm cost [--days N] [--daily-budget X] [--monthly-budget Y] [--json]",
    "",
    'Time at an unknown price is shown as "unknown", never as $0.',
  ].join("\n"),
  options: [
    { name: "days", takesValue: true, valueName: "N", help: "the last N days (default 30)" },
    { name: "daily-budget", takesValue: true, valueName: "X", help: "a daily budget in $ to compare with" },
    { name: "monthly-budget", takesValue: true, valueName: "Y", help: "a monthly budget in $ to compare with" },
    JSON_OPTION,
  ],
  async run(backend, args, out) {
    const days = positiveNumber(args.options.days, "--days", true) ?? 30;
    if (days > 3660) throw new CommandError("--days must be at most 3660", EXIT.usage);
    const dailyBudget = positiveNumber(args.options["daily-budget"], "--daily-budget", false);
    const monthlyBudget = positiveNumber(args.options["monthly-budget"], "--monthly-budget", false);
    const result = await request(
      backend,
      proto.vmCost,
      {
        days,
        ...(dailyBudget !== undefined ? { dailyBudget } : {}),
        ...(monthlyBudget !== undefined ? { monthlyBudget } : {}),
      },
      out,
    );
    if (out.json) out.printJson(result);
    else out.print(renderCost(result, days));
    return EXIT.ok;
  },
};

export const vmCommands: Command[] = [
  vmProvidersCommand,
  vmOfferingsCommand,
  vmListCommand,
  vmCreateCommand,
  vmStartCommand,
  vmStopCommand,
  vmTerminateCommand,
  vmCostCommand,
];
