/**
 * Follows one kernel's events for the CLI: renders or prints them, answers input requests
 * from the terminal, and lets callers wait for the replies of their executions.
 */
import * as proto from "../protocol";
import type { Output } from "./command";
import type { Backend } from "./connection";
import { promptLine } from "./prompt";
import { renderEvent } from "./render";

type Reply = Extract<proto.KernelEvent, { type: "reply" }>;

export class KernelSession {
  private readonly replies = new Map<string, Reply>();
  private readonly waiters = new Map<string, (r: Reply) => void>();
  private endWaiters: (() => void)[] = [];
  ended: Extract<proto.KernelEvent, { type: "died" | "exit" }> | undefined;
  lastSeq = 0;

  constructor(
    private readonly backend: Backend,
    readonly kernelId: string,
    private readonly out: Output,
  ) {
    backend.connection.onNotification(proto.kernelEvent, (p) => {
      if (p.kernelId === kernelId) void this.onEvent(p.event);
    });
  }

  /** Resolves with the execution's reply (ok, error, interrupted, aborted or died). */
  waitForReply(executionId: string): Promise<Reply> {
    const done = this.replies.get(executionId);
    if (done) return Promise.resolve(done);
    return new Promise((resolve) => this.waiters.set(executionId, resolve));
  }

  /** Resolves when the kernel dies or exits. */
  waitForEnd(): Promise<void> {
    if (this.ended) return Promise.resolve();
    return new Promise((resolve) => this.endWaiters.push(resolve));
  }

  private closed = false;

  /** Stop showing events (before a shutdown we asked for ourselves). */
  close(): void {
    this.closed = true;
  }

  private async onEvent(event: proto.KernelEvent | proto.KernelGap): Promise<void> {
    if (this.closed) return;
    if (event.type === "gap") {
      this.out.stderr.write(`(events ${event.from}–${event.to} were rotated out of the kernel's journal)\n`);
      return;
    }
    // A re-attach replays from a seq this session may already have: show each once.
    if (event.seq <= this.lastSeq) return;
    this.lastSeq = event.seq;
    if (this.out.json) this.out.printJsonLine({ kernelId: this.kernelId, event });
    else renderEvent(event, this.out);
    if (event.type === "input_request") {
      const value = await promptLine(event.prompt, event.password);
      await this.backend.connection.sendRequest(proto.kernelInputReply, {
        kernelId: this.kernelId,
        executionId: event.executionId,
        value: value ?? "",
      });
    }
    if (event.type === "reply") {
      this.replies.set(event.executionId, event);
      this.waiters.get(event.executionId)?.(event);
      this.waiters.delete(event.executionId);
    }
    if (event.type === "died" || event.type === "exit") {
      this.ended = event;
      for (const w of this.endWaiters.splice(0)) w();
    }
  }
}
