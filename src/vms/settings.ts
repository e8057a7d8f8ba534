/** Typed access to the `gpuWorkbench.vms.*` settings, and what of them the backend gets. */
import * as vscode from "vscode";
import type { VmInitOptions } from "../protocol";

const cfg = () => vscode.workspace.getConfiguration("gpuWorkbench.vms");

function str(key: string): string {
  const v = cfg().get<unknown>(key, "");
  return typeof v === "string" ? v.trim() : "";
}

function num(key: string, fallback: number, min = 0): number {
  const v = cfg().get<unknown>(key, fallback);
  return typeof v === "number" && Number.isFinite(v) && v >= min ? v : fallback;
}

/** Sent as initializationOptions.vms (and again with every didChangeConfiguration). */
export function vmInitOptions(): VmInitOptions {
  const regions = cfg().get<unknown>("aws.regions", []);
  const hosts = cfg().get<unknown>("ssh.hosts", []);
  const aws: NonNullable<VmInitOptions["aws"]> = {};
  if (str("aws.endpointUrl")) aws.endpointUrl = str("aws.endpointUrl");
  if (Array.isArray(regions) && regions.length) aws.regions = regions.filter((r) => typeof r === "string");
  if (str("aws.profile")) aws.profile = str("aws.profile");
  return {
    aws,
    lambda: str("lambda.apiUrl") ? { apiUrl: str("lambda.apiUrl") } : {},
    linode: str("linode.apiUrl") ? { apiUrl: str("linode.apiUrl") } : {},
    ssh: { hosts: Array.isArray(hosts) ? hosts : [] },
  };
}

export const vmSettings = {
  get refreshSeconds(): number {
    return num("refreshSeconds", 60, 5);
  },
  get autostopMinutes(): number {
    return num("autostopMinutes", 60);
  },
  get autostopGpuThreshold(): number {
    return num("autostopGpuThreshold", 10);
  },
  get autostopTerminateIfNoStop(): boolean {
    return cfg().get<boolean>("autostopTerminateIfNoStop", false) === true;
  },
  get dailyBudget(): number {
    return num("dailyBudget", 0);
  },
  get monthlyBudget(): number {
    return num("monthlyBudget", 0);
  },
};

/** Providers whose machines are the user's own: no idle autostop unless asked per VM. */
export const NO_AUTOSTOP_PROVIDERS = new Set(["ssh", "local"]);
