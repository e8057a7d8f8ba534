/**
 * The cost status item (`$(vm) name $accrued · $burn/h`), budget notifications at 80% and
 * 100% once per period, idle autostop sent to the backend for each running machine, and the
 * backend's idle warnings with "Keep Running".
 */
import * as vscode from "vscode";
import type { LanguageClient } from "vscode-languageclient/node";
import type { Ctx } from "../ctx";
import * as proto from "../protocol";
import { callVm } from "./calls";
import { DONE_ACTIONS, idleWarningText, money, rate, vmKey } from "./format";
import type { VmModel } from "./model";
import { notice, notify } from "./prompts";
import { NO_AUTOSTOP_PROVIDERS, vmSettings } from "./settings";

/** Running machines that cost money (this computer and free hosts do not show in the status bar). */
export function costsMoney(v: proto.VmInfo): boolean {
  return (v.state === "running" || v.state === "pending") && v.provider !== "local" && v.pricePerHour !== 0;
}

const BUDGET_NOTIFIED_KEY = "gpuWorkbench.vms.budgetNotified";

export interface VmStatusSnapshot {
  visible: boolean;
  text: string;
  tooltip: string;
  warning: boolean;
  active: string | undefined;
  idle: string[];
  budgets: proto.VmBudgetStatus[];
  /** Idle autostop as last known per machine ("provider/id"): set, warned or kept running. */
  autostop: Record<string, proto.VmAutostopInfo>;
  /** The backend's idle warnings received since this client connected, oldest first. */
  idleWarnings: proto.VmIdleWarningParams[];
}

export class VmStatus implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem("gpuWorkbench.vmCost", vscode.StatusBarAlignment.Left, 90);
  private cost: proto.VmCostResult | undefined;
  private readonly autostop = new Map<string, { sig: string; info: proto.VmAutostopInfo }>();
  private readonly subs: vscode.Disposable[] = [this.item];
  private client: LanguageClient | undefined;
  private updating: Promise<void> | undefined;
  active: proto.VmInfo | undefined;

  constructor(
    private readonly ctx: Ctx,
    private readonly model: VmModel,
    private readonly kernelTarget: () => string | undefined,
  ) {
    this.item.name = "GPU Workbench: machine cost";
    this.item.command = "gpuWorkbench.vms.revealActive";
    this.subs.push(
      model.onDidChange(() => void this.update()),
      ctx.backend.onDidChangeState((s) => s === "ready" && this.listen()),
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (e.affectsConfiguration("gpuWorkbench.vms")) {
          this.autostop.clear();
          void this.update();
        }
      }),
    );
    this.listen();
  }

  /** Idle warnings come as notifications; a new client (after a restart) needs a new handler. */
  private listen(): void {
    const client = this.ctx.backend.client;
    if (!client || client === this.client) return;
    this.client = client;
    this.autostop.clear();
    this.subs.push(client.onNotification(proto.vmIdleWarning, (p) => this.onIdleWarning(p)));
  }

  update(): Promise<void> {
    if (!this.updating) {
      this.updating = this.doUpdate().finally(() => {
        this.updating = undefined;
      });
    }
    return this.updating;
  }

  private async doUpdate(): Promise<void> {
    if (!this.ctx.backend.client) return;
    try {
      this.cost = await callVm(
        this.ctx,
        undefined,
        proto.vmCost,
        { days: 31, dailyBudget: vmSettings.dailyBudget, monthlyBudget: vmSettings.monthlyBudget },
        { title: "Reading machine costs", progress: "none" },
      );
    } catch (err) {
      this.ctx.log.debug(`vm/cost failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    await this.syncAutostop();
    this.render();
    await this.notifyBudgets();
  }

  private async syncAutostop(): Promise<void> {
    const running = this.model.vms.filter((v) => v.state === "running");
    const live = new Set(running.map(vmKey));
    for (const k of [...this.autostop.keys()]) if (!live.has(k)) this.autostop.delete(k);
    for (const vm of running) {
      const minutes = NO_AUTOSTOP_PROVIDERS.has(vm.provider) ? 0 : vmSettings.autostopMinutes;
      const params: proto.VmAutostopParams = {
        provider: vm.provider,
        id: vm.id,
        idleMinutes: minutes,
        gpuThreshold: vmSettings.autostopGpuThreshold,
        terminateIfNoStop: vmSettings.autostopTerminateIfNoStop,
      };
      const sig = JSON.stringify(params);
      const known = this.autostop.get(vmKey(vm));
      // Once per machine and settings (a repeated call must not look like activity).
      if (known?.sig === sig) continue;
      try {
        const info = await callVm(this.ctx, undefined, proto.vmAutostop, params, {
          title: "Idle autostop",
          progress: "none",
        });
        this.autostop.set(vmKey(vm), { sig, info });
      } catch (err) {
        this.ctx.log.debug(`vm/autostop failed for ${vm.name}: ${err instanceof Error ? err.message : String(err)}`);
        this.autostop.set(vmKey(vm), {
          sig,
          info: {
            provider: vm.provider,
            id: vm.id,
            idleMinutes: 0,
            idleSince: null,
            actAt: null,
            action: "none",
            reason: "",
          },
        });
      }
    }
  }

  private pickActive(): proto.VmInfo | undefined {
    const target = this.kernelTarget();
    const t = target ? this.model.vms.find((v) => vmKey(v) === target && v.state !== "terminated") : undefined;
    if (t) return t;
    const running = this.model.vms.filter(costsMoney);
    return running.sort((a, b) => (b.pricePerHour ?? 0) - (a.pricePerHour ?? 0))[0];
  }

  private idleNames(): string[] {
    const out: string[] = [];
    for (const vm of this.model.vms) {
      const a = this.autostop.get(vmKey(vm));
      if (vm.state === "running" && a?.info.idleSince) out.push(vm.name);
    }
    return out;
  }

  private render(): void {
    const active = this.pickActive();
    this.active = active;
    const running = this.model.vms.filter(costsMoney);
    const burn = this.cost?.burnRatePerHour ?? running.reduce((s, v) => s + (v.pricePerHour ?? 0), 0);
    if (!active && !running.length) {
      this.item.hide();
      return;
    }
    const name = active ? `${active.name} ` : "";
    const accrued = active?.accruedCost ?? null;
    this.item.text = `$(vm) ${name}${money(accrued)} · ${rate(burn)}`;
    const budgets = this.cost?.budgets ?? [];
    const idle = this.idleNames();
    const budgetWarn = budgets.some((b) => b.level === "warning" || b.level === "over");
    this.item.backgroundColor =
      budgetWarn || idle.length ? new vscode.ThemeColor("statusBarItem.warningBackground") : undefined;
    const md = new vscode.MarkdownString();
    if (active) {
      md.appendMarkdown(
        `**${active.name}** (${active.provider}, ${active.state}): ${money(active.accruedCost)} so far at ${rate(active.pricePerHour)}`,
      );
      if (this.kernelTarget() === vmKey(active)) md.appendMarkdown(" — kernel target");
      md.appendMarkdown("\n\n");
    }
    md.appendMarkdown(`Running: ${running.length} machine${running.length === 1 ? "" : "s"}, ${rate(burn)} in all\n\n`);
    if (this.cost) md.appendMarkdown(`Spent in the last 31 days: ${money(this.cost.total)}\n\n`);
    for (const b of budgets)
      md.appendMarkdown(`Budget (${b.period}): ${money(b.spent)} of ${money(b.limit)} — ${b.level}\n\n`);
    if (idle.length) md.appendMarkdown(`Idle: ${idle.join(", ")}\n\n`);
    md.appendMarkdown("Click to show it in GPU Machines.");
    this.item.tooltip = md;
    this.item.accessibilityInformation = { label: `GPU machine cost: ${this.item.text.replace("$(vm) ", "")}` };
    this.item.show();
  }

  private async notifyBudgets(): Promise<void> {
    const budgets = this.cost?.budgets ?? [];
    const state = this.ctx.extension.globalState.get<Record<string, string>>(BUDGET_NOTIFIED_KEY, {});
    const now = new Date();
    let changed = false;
    for (const b of budgets) {
      if (b.level !== "warning" && b.level !== "over") continue;
      const period = b.period.startsWith("month")
        ? `${now.getFullYear()}-${now.getMonth() + 1}`
        : `${now.getFullYear()}-${now.getMonth() + 1}-${now.getDate()}`;
      const key = `${b.period}:${period}`;
      const prior = state[key];
      if (prior === b.level || (prior === "over" && b.level === "warning")) continue;
      state[key] = b.level;
      changed = true;
      const pct = b.limit > 0 ? Math.round((b.spent / b.limit) * 100) : 0;
      const msg =
        b.level === "over"
          ? `GPU machines are over the ${b.period} budget: ${money(b.spent)} of ${money(b.limit)}.`
          : `GPU machines have used ${pct}% of the ${b.period} budget: ${money(b.spent)} of ${money(b.limit)}.`;
      void vscode.window.showWarningMessage(msg, "Show Machines", "Change Budget").then((c) => {
        if (c === "Show Machines") void vscode.commands.executeCommand("gpuWorkbench.machines.focus");
        if (c === "Change Budget")
          void vscode.commands.executeCommand("workbench.action.openSettings", "gpuWorkbench.vms");
      });
    }
    if (changed) await this.ctx.extension.globalState.update(BUDGET_NOTIFIED_KEY, state);
  }

  private onIdleWarning(p: proto.VmIdleWarningParams): void {
    const key = `${p.provider}/${p.id}`;
    this.lastIdleWarning = p;
    this.idleWarnings.push(p);
    if (this.idleWarnings.length > 50) this.idleWarnings.shift();
    const known = this.autostop.get(key);
    const vm = this.model.find(p.provider, p.id);
    const msg = idleWarningText(p, Date.now(), vm?.pricePerHour, known?.info.idleMinutes);
    this.ctx.log.info(`Idle autostop of ${p.name} (${key}): ${p.action}. ${msg}`);
    if (DONE_ACTIONS.has(p.action)) {
      // The backend acted on its own: show the machine's new state now, not at the next poll.
      this.autostop.delete(key);
      notice(msg);
      void this.model.refresh();
      return;
    }
    if (known) {
      const minutes = known.info.idleMinutes;
      known.info = {
        ...known.info,
        actAt: p.actAt,
        idleSince: known.info.idleSince ?? (minutes ? p.actAt - minutes * 60 : null),
        action: p.action,
      };
    }
    const actions = p.action === "warn" ? ["Keep Running", "Terminate…"] : ["Keep Running"];
    void notify(msg, ...actions).then(async (c) => {
      if (c === "Keep Running") await this.keepRunning(p.provider, p.id);
      if (c === "Terminate…") {
        await vscode.commands.executeCommand("gpuWorkbench.vms.terminate", { provider: p.provider, id: p.id });
      }
    });
    void this.update();
  }

  lastIdleWarning: proto.VmIdleWarningParams | undefined;
  private readonly idleWarnings: proto.VmIdleWarningParams[] = [];

  async keepRunning(provider: string, id: string): Promise<proto.VmAutostopInfo | undefined> {
    try {
      const info = await callVm(
        this.ctx,
        undefined,
        proto.vmKeepRunning,
        { provider, id },
        {
          title: "Keep running",
          progress: "window",
        },
      );
      const known = this.autostop.get(`${provider}/${id}`);
      if (known) known.info = info;
      void vscode.window.setStatusBarMessage("$(check) The idle timer starts again", 4000);
      this.render();
      return info;
    } catch (err) {
      void vscode.window.showErrorMessage(
        `Could not keep the machine running: ${err instanceof Error ? err.message : String(err)}`,
      );
      return undefined;
    }
  }

  snapshot(): VmStatusSnapshot {
    const tip = this.item.tooltip;
    return {
      visible: !!this.active,
      text: this.item.text,
      tooltip: tip instanceof vscode.MarkdownString ? tip.value : String(tip ?? ""),
      warning: !!this.item.backgroundColor,
      active: this.active ? vmKey(this.active) : undefined,
      idle: this.idleNames(),
      budgets: this.cost?.budgets ?? [],
      autostop: Object.fromEntries([...this.autostop].map(([k, v]) => [k, v.info])),
      idleWarnings: [...this.idleWarnings],
    };
  }

  dispose(): void {
    for (const d of this.subs) d.dispose();
  }
}
