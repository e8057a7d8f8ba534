/**
 * Provider credentials, kept only in VS Code's SecretStorage (one secret holding
 * {provider: {field: value}}), handed to the backend per call, and fed to the redactor so
 * no value is ever logged or traced.
 */
import type * as vscode from "vscode";
import { redactor } from "./redact";

const SECRET_KEY = "gpuWorkbench.vms.credentials";

export type Credentials = Record<string, Record<string, string>>;

export class CredentialStore implements vscode.Disposable {
  private cache: Credentials | undefined;
  private readonly sub: vscode.Disposable;

  constructor(private readonly secrets: vscode.SecretStorage) {
    this.sub = secrets.onDidChange((e) => {
      if (e.key === SECRET_KEY) {
        this.cache = undefined;
        void this.all();
      }
    });
    void this.all();
  }

  /** Every provider's credentials (also refreshes the redactor). */
  async all(): Promise<Credentials> {
    if (this.cache) return this.cache;
    let parsed: Credentials = {};
    try {
      const raw = await this.secrets.get(SECRET_KEY);
      const v: unknown = raw ? JSON.parse(raw) : {};
      if (v && typeof v === "object") parsed = sanitize(v as Record<string, unknown>);
    } catch {
      parsed = {};
    }
    this.cache = parsed;
    redactor.setSecrets(Object.values(parsed).flatMap((f) => Object.values(f)));
    return parsed;
  }

  async set(provider: string, fields: Record<string, string>): Promise<void> {
    const all = { ...(await this.all()) };
    all[provider] = { ...(all[provider] ?? {}), ...fields };
    await this.write(all);
  }

  async clear(provider?: string): Promise<void> {
    const all = { ...(await this.all()) };
    if (provider) delete all[provider];
    await this.write(provider ? all : {});
  }

  async providersWithCredentials(): Promise<string[]> {
    return Object.keys(await this.all()).filter((p) => Object.keys(this.cache?.[p] ?? {}).length);
  }

  private async write(all: Credentials): Promise<void> {
    // Known to the redactor before anything can send them.
    redactor.setSecrets(Object.values(all).flatMap((f) => Object.values(f)));
    this.cache = all;
    if (Object.keys(all).length) await this.secrets.store(SECRET_KEY, JSON.stringify(all));
    else await this.secrets.delete(SECRET_KEY);
  }

  dispose(): void {
    this.sub.dispose();
  }
}

function sanitize(v: Record<string, unknown>): Credentials {
  const out: Credentials = {};
  for (const [p, fields] of Object.entries(v)) {
    if (!fields || typeof fields !== "object") continue;
    const f: Record<string, string> = {};
    for (const [k, val] of Object.entries(fields as Record<string, unknown>)) if (typeof val === "string") f[k] = val;
    out[p] = f;
  }
  return out;
}
