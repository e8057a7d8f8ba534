/**
 * One logger on a LogOutputChannel named "GPU Workbench". Mirrored to the console when
 * CI=true so test logs carry it.
 */
import * as vscode from "vscode";
import { redactingChannel, redactor } from "./vms/redact";

export class Logger implements vscode.Disposable {
  readonly channel: vscode.LogOutputChannel;
  private readonly mirror = process.env.CI === "true";

  constructor(name = "GPU Workbench") {
    // Every write is redacted: provider credentials never reach the log or protocol traces.
    this.channel = redactingChannel(vscode.window.createOutputChannel(name, { log: true }));
  }

  trace(msg: string): void {
    this.channel.trace(msg);
  }
  debug(msg: string): void {
    this.channel.debug(msg);
    this.echo("debug", msg);
  }
  info(msg: string): void {
    this.channel.info(msg);
    this.echo("info", msg);
  }
  warn(msg: string): void {
    this.channel.warn(msg);
    this.echo("warn", msg);
  }
  error(msg: string | Error): void {
    this.channel.error(msg);
    this.echo("error", msg instanceof Error ? (msg.stack ?? msg.message) : msg);
  }

  show(): void {
    this.channel.show(true);
  }

  dispose(): void {
    this.channel.dispose();
  }

  private echo(level: string, msg: string): void {
    if (this.mirror) console.log(`[gpu-workbench ${level}] ${redactor.redact(msg)}`);
  }
}
