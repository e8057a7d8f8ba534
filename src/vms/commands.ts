/** The machine commands: credentials, create, start/stop/terminate, SSH, Remote-SSH, kernel target. */
import { execFile } from "node:child_process";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import * as vscode from "vscode";
import type { Ctx } from "../ctx";
import * as proto from "../protocol";
import { activeDocument, useMachineForActiveDocument } from "../remote/commands";
import { canConnect } from "../remote/model";
import { callVm, reportVmError } from "./calls";
import { describeVm, money, rate, sshAlias, sshArgs, vmKey } from "./format";
import type { VmModel } from "./model";
import { confirm, input, type Pick, pick } from "./prompts";
import type { ManagedSshConfig } from "./sshConfig";
import type { VmNode } from "./tree";

export const KERNEL_TARGET_KEY = "gpuWorkbench.vms.kernelTarget";
const REMOTE_SSH_IDS = ["ms-vscode-remote.remote-ssh", "jeanp413.open-remote-ssh"];

/**
 * The remote windows "Open in Remote-SSH" opened (authorities); tests set `dryRun` (through
 * a hidden command outside Production mode) to see them without a window being opened.
 */
export const remoteWindows = { opened: [] as string[], dryRun: false };

export class VmCommands {
  constructor(
    private readonly ctx: Ctx,
    private readonly model: VmModel,
    private readonly ssh: ManagedSshConfig,
  ) {}

  // ---- which machine -----------------------------------------------------------------

  /** The machine an argument names (a tree node, {provider,id}, "provider/id"), else a pick. */
  async vmOf(arg: unknown, title: string, filter: (vm: proto.VmInfo) => boolean = () => true) {
    const a = arg as Partial<VmNode & { provider: string; id: string }> | string | undefined;
    if (a && typeof a === "object" && "vm" in a && a.vm) return this.model.find(a.vm.provider, a.vm.id) ?? a.vm;
    if (a && typeof a === "object" && typeof a.provider === "string" && typeof a.id === "string") {
      if (!this.model.loaded) await this.model.refresh();
      return this.model.find(a.provider, a.id);
    }
    if (typeof a === "string" && a.includes("/")) {
      const [p, ...rest] = a.split("/");
      if (!this.model.loaded) await this.model.refresh();
      return this.model.find(p ?? "", rest.join("/"));
    }
    if (!this.model.loaded) await this.model.refresh();
    const vms = this.model.vms.filter((v) => v.state !== "terminated" && filter(v));
    if (!vms.length) {
      void vscode.window.showInformationMessage(`${title}: there is no machine to choose.`);
      return undefined;
    }
    const p = await pick(
      vms.map((vm) => ({
        label: vm.name || vm.id,
        description: `${vm.state} · ${describeVm(vm)}`,
        value: vm,
        key: vmKey(vm),
      })),
      { title, placeHolder: "Choose a machine" },
    );
    return p?.value;
  }

  // ---- credentials -------------------------------------------------------------------

  async setCredentials(providerArg?: unknown): Promise<boolean> {
    if (!this.model.providers.length) await this.model.refresh();
    const withFields = this.model.providers.filter((p) => p.credentialFields.length);
    if (!withFields.length) {
      throw new Error(this.model.failure ?? "No provider needs credentials (the backend listed none).");
    }
    let provider = withFields.find((p) => p.name === providerArg);
    if (!provider) {
      const chosen = await pick(
        withFields.map((p) => ({
          label: p.displayName,
          description: p.configured ? "credentials set" : "not set",
          detail: `Fields: ${p.credentialFields.join(", ")}`,
          value: p,
          key: p.name,
        })),
        { title: "GPU Workbench: Set Provider Credentials", placeHolder: "Which provider?" },
      );
      provider = chosen?.value;
    }
    if (!provider) return false;
    const values: Record<string, string> = {};
    for (const [i, field] of provider.credentialFields.entries()) {
      const v = await input({
        title: `${provider.displayName} credentials (${i + 1}/${provider.credentialFields.length})`,
        prompt: `${field} — kept in VS Code's secret storage, never in settings or logs`,
        password: true,
        ignoreFocusOut: true,
        validateInput: (s) => (s.trim() ? undefined : "Required"),
      });
      if (v === undefined) return false;
      values[field] = v.trim();
    }
    await this.model.creds.set(provider.name, values);
    void vscode.window.setStatusBarMessage(`$(key) ${provider.displayName} credentials saved`, 4000);
    await this.model.refresh();
    return true;
  }

  async clearCredentials(providerArg?: unknown): Promise<void> {
    const names = await this.model.creds.providersWithCredentials();
    if (!names.length) {
      void vscode.window.showInformationMessage("No provider credentials are stored.");
      return;
    }
    let name = typeof providerArg === "string" && names.includes(providerArg) ? providerArg : undefined;
    if (!name) {
      const items: Pick<string>[] = names.map((n) => ({
        label: this.model.provider(n)?.displayName ?? n,
        value: n,
        key: n,
      }));
      items.push({ label: "All providers", value: "*", key: "*" });
      name = (await pick(items, { title: "GPU Workbench: Clear Provider Credentials" }))?.value;
    }
    if (!name) return;
    await this.model.creds.clear(name === "*" ? undefined : name);
    void vscode.window.setStatusBarMessage("$(key) Credentials cleared", 4000);
    await this.model.refresh();
  }

  // ---- lifecycle ---------------------------------------------------------------------

  async start(arg: unknown): Promise<proto.VmInfo | undefined> {
    const vm = await this.vmOf(arg, "Start machine", (v) => v.state === "stopped" && v.capabilities.includes("start"));
    if (!vm) return undefined;
    return this.lifecycle(vm, proto.vmStart, `Starting ${vm.name}`);
  }

  async stop(arg: unknown): Promise<proto.VmInfo | undefined> {
    const vm = await this.vmOf(arg, "Stop machine", (v) => v.state === "running" && v.capabilities.includes("stop"));
    if (!vm) return undefined;
    if (!vm.capabilities.includes("stop")) {
      throw new Error(`${vm.name} cannot be stopped on ${vm.provider}; terminate it to stop paying.`);
    }
    if (vm.stopKeepsBilling) {
      const ok = await confirm(
        `Stop ${vm.name}? ${this.providerName(vm)} still bills a stopped machine.`,
        `A stopped ${this.providerName(vm)} machine keeps costing ${rate(vm.pricePerHour)}. Terminate it to stop paying.`,
        "Stop Anyway",
        "Terminate Instead…",
      );
      if (ok === "Terminate Instead…") return this.terminate(vm);
      if (ok !== "Stop Anyway") return undefined;
    }
    return this.lifecycle(vm, proto.vmStop, `Stopping ${vm.name}`);
  }

  async terminate(arg: unknown): Promise<proto.VmInfo | undefined> {
    const vm = await this.vmOf(arg, "Terminate machine", (v) => v.capabilities.includes("terminate"));
    if (!vm) return undefined;
    const ok = await confirm(
      `Terminate ${vm.name}? Its disk and everything on it are deleted.`,
      `It has cost ${money(vm.accruedCost)} so far. Terminating stops ${rate(vm.pricePerHour)} of charges. This cannot be undone.`,
      "Terminate",
    );
    if (ok !== "Terminate") return undefined;
    return this.lifecycle(vm, proto.vmTerminate, `Terminating ${vm.name}`);
  }

  private async lifecycle(vm: proto.VmInfo, type: typeof proto.vmStart, title: string) {
    try {
      const out = await callVm(
        this.ctx,
        this.model.creds,
        type,
        { provider: vm.provider, id: vm.id },
        { title, progress: "notification" },
      );
      this.model.upsert(out);
      void this.model.refresh();
      return out;
    } catch (err) {
      reportVmError(this.ctx, err, vm.provider);
      return undefined;
    }
  }

  private providerName(vm: proto.VmInfo): string {
    return this.model.provider(vm.provider)?.displayName ?? vm.provider;
  }

  // ---- create ------------------------------------------------------------------------

  async create(providerArg?: unknown): Promise<proto.VmInfo | undefined> {
    if (!this.model.providers.length) await this.model.refresh();
    const creatable = this.model.providers.filter((p) => p.capabilities.includes("create"));
    if (!creatable.length) throw new Error(this.model.failure ?? "No provider can create machines.");
    let provider = creatable.find((p) => p.name === providerArg);
    if (!provider) {
      provider = (
        await pick(
          creatable.map((p) => ({
            label: p.displayName,
            description: p.available
              ? p.configured || !p.credentialFields.length
                ? ""
                : "credentials not set"
              : "unavailable",
            detail: p.available ? undefined : (p.reason ?? undefined),
            value: p,
            key: p.name,
          })),
          { title: "Create GPU Machine (1/5): provider" },
        )
      )?.value;
    }
    if (!provider) return undefined;
    const stored = (await this.model.creds.all())[provider.name] ?? {};
    const hasCreds = provider.configured || provider.credentialFields.every((f) => stored[f]);
    if (provider.credentialFields.length && !hasCreds) {
      const go = await confirm(
        `${provider.displayName} needs credentials first.`,
        `Fields: ${provider.credentialFields.join(", ")}`,
        "Set Credentials…",
      );
      if (go !== "Set Credentials…" || !(await this.setCredentials(provider.name))) return undefined;
    }
    const p = provider;
    let offerings: proto.VmOffering[];
    try {
      offerings = (
        await callVm(
          this.ctx,
          this.model.creds,
          proto.vmOfferings,
          { provider: p.name },
          {
            title: `Fetching ${p.displayName} GPU types and prices`,
            progress: "notification",
            delayMs: 500,
          },
        )
      ).offerings;
    } catch (err) {
      reportVmError(this.ctx, err, p.name);
      return undefined;
    }
    if (!offerings.length) throw new Error(`${p.displayName} offers no machine types right now.`);

    const regionStats = new Map<string, { available: number; total: number }>();
    for (const o of offerings) {
      for (const r of o.regions) {
        const s = regionStats.get(r.name) ?? { available: 0, total: 0 };
        s.total++;
        if (r.available !== false) s.available++;
        regionStats.set(r.name, s);
      }
    }
    const regions = [...regionStats.entries()].sort(
      (a, b) => b[1].available - a[1].available || a[0].localeCompare(b[0]),
    );
    const region = (
      await pick(
        regions.map(([name, s]) => ({
          label: name,
          description: `${s.available} of ${s.total} types available`,
          value: name,
          key: name,
        })),
        { title: "Create GPU Machine (2/5): region", matchOnDescription: true },
      )
    )?.value;
    if (!region) return undefined;

    const inRegion = offerings
      .map((o) => ({ o, r: o.regions.find((r) => r.name === region) }))
      .filter((x) => x.r)
      .sort((a, b) => (a.o.pricePerHour ?? Number.POSITIVE_INFINITY) - (b.o.pricePerHour ?? Number.POSITIVE_INFINITY));
    const type = (
      await pick(
        inRegion.map(({ o, r }) => ({
          label: `${o.gpuCount > 1 ? `${o.gpuCount}× ` : ""}${o.gpuModel ?? "no GPU"} — ${rate(o.pricePerHour)}`,
          description: `${o.instanceType}${r?.available === false ? " · unavailable now" : ""}`,
          detail: [
            o.gpuMemoryGiB ? `${o.gpuMemoryGiB} GiB GPU memory` : "",
            o.vcpus ? `${o.vcpus} vCPUs` : "",
            o.ramGiB ? `${o.ramGiB} GiB RAM` : "",
            o.spotPricePerHour !== null ? `spot ${rate(o.spotPricePerHour)}` : "",
            o.description,
          ]
            .filter(Boolean)
            .join(" · "),
          value: o,
          key: o.instanceType,
        })),
        {
          title: `Create GPU Machine (3/5): GPU type in ${region}, cheapest first`,
          matchOnDescription: true,
          matchOnDetail: true,
        },
      )
    )?.value;
    if (!type) return undefined;

    let spot = false;
    if (p.capabilities.includes("spot") && type.spotPricePerHour !== null) {
      const s = await pick(
        [
          {
            label: `On-demand — ${rate(type.pricePerHour)}`,
            detail: "Runs until you stop it.",
            value: false,
            key: "on-demand",
          },
          {
            label: `Spot — ${rate(type.spotPricePerHour)}`,
            detail: "Cheaper, but the provider can reclaim it at any time.",
            value: true,
            key: "spot",
          },
        ],
        { title: "Create GPU Machine (4/5): pricing" },
      );
      if (!s) return undefined;
      spot = s.value;
    }
    const existing = new Set(this.model.vms.map((v) => v.name));
    const base = `gpu-${(type.gpuModel ?? "vm").toLowerCase().replace(/[^a-z0-9]+/g, "")}`;
    let suggestion = base;
    for (let i = 2; existing.has(suggestion); i++) suggestion = `${base}-${i}`;
    const name = await input({
      title: "Create GPU Machine (5/5): name",
      value: suggestion,
      prompt: "Letters, digits and dashes",
      validateInput: (s) =>
        /^[A-Za-z0-9][A-Za-z0-9-]{0,62}$/.test(s.trim()) ? undefined : "Letters, digits and dashes, up to 63",
    });
    if (!name) return undefined;
    let key = await findPublicKey();
    if (!key && p.name !== "aws") {
      const gen = await confirm(
        `${p.displayName} needs an SSH key, and none was found in ~/.ssh.`,
        "Generate one now with ssh-keygen (~/.ssh/id_ed25519, no passphrase)? You can also create one yourself and run this again.",
        "Generate Key",
      );
      if (gen !== "Generate Key") return undefined;
      key = await generateKey();
    }
    const price = spot ? type.spotPricePerHour : type.pricePerHour;
    const keyLine = key
      ? `SSH key: ${key.path}`
      : "No SSH key found in ~/.ssh: the machine will not accept SSH logins.";
    const ok = await confirm(
      `Create ${name.trim()} for ${rate(price)}?`,
      `${p.displayName} ${type.instanceType} (${type.gpuCount}× ${type.gpuModel ?? "no GPU"}) in ${region}${spot ? ", spot" : ""}.\n${keyLine}\nIt is billed from now until you ${p.stopKeepsBilling ? "terminate" : "stop or terminate"} it. Idle machines are stopped after ${vscode.workspace.getConfiguration("gpuWorkbench.vms").get("autostopMinutes", 60)} minutes (gpuWorkbench.vms.autostopMinutes).`,
      "Create",
    );
    if (ok !== "Create") return undefined;
    try {
      const vm = await callVm(
        this.ctx,
        this.model.creds,
        proto.vmCreate,
        {
          provider: p.name,
          name: name.trim(),
          instanceType: type.instanceType,
          region,
          spot,
          ...(key ? { sshPublicKey: key.text } : {}),
        },
        { title: `Creating ${name.trim()} on ${p.displayName}`, progress: "notification", delayMs: 0 },
      );
      this.model.upsert(vm);
      void this.model.refresh();
      void vscode.window.showInformationMessage(`${vm.name} is ${vm.state} (${rate(vm.pricePerHour)}).`);
      return vm;
    } catch (err) {
      reportVmError(this.ctx, err, p.name);
      return undefined;
    }
  }

  // ---- reach it ----------------------------------------------------------------------

  async openSsh(arg: unknown): Promise<vscode.Terminal | undefined> {
    const vm = await this.vmOf(arg, "Open SSH terminal", (v) => !!v.ssh && v.state === "running");
    if (!vm) return undefined;
    if (!vm.ssh) throw new Error(`${vm.name} has no SSH address yet (${vm.state}).`);
    await this.ssh.write(this.model.vms);
    const args = vm.ssh.alias ? ["-F", this.ssh.file, sshAlias(vm)] : sshArgs(vm);
    const term = vscode.window.createTerminal({ name: `ssh ${vm.name}`, shellPath: "ssh", shellArgs: args });
    term.show();
    return term;
  }

  async openRemote(arg: unknown): Promise<boolean> {
    const vm = await this.vmOf(arg, "Open in Remote-SSH", (v) => !!v.ssh && v.state === "running");
    if (!vm) return false;
    if (!vm.ssh) throw new Error(`${vm.name} has no SSH address yet (${vm.state}).`);
    await this.ssh.write(this.model.vms);
    const ext = REMOTE_SSH_IDS.map((id) => vscode.extensions.getExtension(id)).find(Boolean);
    if (!ext) {
      const c = await vscode.window.showInformationMessage(
        "Opening a window on the machine needs the Remote - SSH extension.",
        "Install Remote - SSH",
        "Open SSH Terminal",
      );
      if (c === "Install Remote - SSH") {
        await vscode.commands.executeCommand("workbench.extensions.search", "ms-vscode-remote.remote-ssh");
      }
      if (c === "Open SSH Terminal") await this.openSsh(vm);
      return false;
    }
    // The Include goes into the file Remote-SSH reads ("remote.SSH.configFile", else ~/.ssh/config).
    if (!(await this.ssh.included()) && !(await this.ssh.offerInclude(true))) {
      void vscode.window.showWarningMessage(
        `Remote-SSH will not know the host ${sshAlias(vm)} without the Include line in ${this.ssh.userConfig}. You can add "Include ${this.ssh.file}" there yourself, or use Open SSH Terminal.`,
      );
      return false;
    }
    // Both Remote - SSH and Open Remote - SSH resolve the authority "ssh-remote+<Host alias>"
    // from the ssh config they read (neither offers a command taking a host).
    const authority = `ssh-remote+${sshAlias(vm)}`;
    remoteWindows.opened.push(authority);
    if (!remoteWindows.dryRun) await vscode.commands.executeCommand("vscode.newWindow", { remoteAuthority: authority });
    return true;
  }

  async copyAddress(arg: unknown): Promise<string | undefined> {
    const vm = await this.vmOf(arg, "Copy address", (v) => !!(v.address || v.ssh));
    if (!vm) return undefined;
    const text = vm.ssh ? `${vm.ssh.user ? `${vm.ssh.user}@` : ""}${vm.ssh.host}` : (vm.address ?? "");
    if (!text) throw new Error(`${vm.name} has no address yet.`);
    await vscode.env.clipboard.writeText(text);
    void vscode.window.setStatusBarMessage(`Copied ${text}`, 3000);
    return text;
  }

  kernelTarget(): string | undefined {
    return this.ctx.extension.globalState.get<{ key: string }>(KERNEL_TARGET_KEY)?.key;
  }

  /**
   * The machine the status bar follows, and, for a running machine with SSH, the active
   * document's kernel target: connect (asking about the host key once), choose one of its
   * interpreters, bind the document and start its kernel there.
   */
  async setKernelTarget(arg: unknown): Promise<string | undefined> {
    const vm = await this.vmOf(arg, "Use as kernel target");
    if (!vm) return undefined;
    const key = vmKey(vm);
    const same = this.kernelTarget() === key;
    const doc = activeDocument();
    if (canConnect(vm)) {
      const target = await useMachineForActiveDocument(this.ctx, vm);
      if (!target) return undefined;
      await this.ctx.extension.globalState.update(KERNEL_TARGET_KEY, { key, name: vm.name });
      void vscode.window.showInformationMessage(
        doc
          ? `${doc.path.split("/").pop()} now runs on ${vm.name}.`
          : `Connected to ${vm.name}. Open a Python file or notebook and choose it with "Select Kernel Target…".`,
      );
      return key;
    }
    await this.ctx.extension.globalState.update(KERNEL_TARGET_KEY, same ? undefined : { key, name: vm.name });
    void vscode.window.showInformationMessage(
      same
        ? `${vm.name} is no longer the kernel target.`
        : `${vm.name} is now the kernel target for the status bar's cost. Start it (with an SSH address) to run kernels on it.`,
    );
    return same ? undefined : key;
  }
}

/** The user's SSH public key (ed25519, then ecdsa, then rsa), if there is one. */
async function findPublicKey(): Promise<{ path: string; text: string } | undefined> {
  for (const name of ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"]) {
    const p = path.join(os.homedir(), ".ssh", name);
    try {
      const text = (await fs.readFile(p, "utf8")).trim();
      if (text) return { path: p, text };
    } catch {
      // not there
    }
  }
  return undefined;
}

function generateKey(): Promise<{ path: string; text: string }> {
  const file = path.join(os.homedir(), ".ssh", "id_ed25519");
  return new Promise((resolve, reject) => {
    void fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 }).then(() =>
      execFile("ssh-keygen", ["-t", "ed25519", "-N", "", "-C", "gpu-workbench", "-f", file], (err) => {
        if (err) return reject(new Error(`ssh-keygen failed: ${err.message}`));
        void fs
          .readFile(`${file}.pub`, "utf8")
          .then((text) => resolve({ path: `${file}.pub`, text: text.trim() }), reject);
      }),
    );
  });
}
