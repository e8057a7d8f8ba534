/**
 * Restarts that don't pile up: one task in flight, at most one queued. Requests made
 * while a task is queued join that queued run. No `vscode` import (unit-tested).
 */
export class SerialRunner {
  private running: Promise<void> | undefined;
  private queued: Promise<void> | undefined;

  constructor(private readonly task: () => Promise<void>) {}

  /** Run the task now, or once after the one in flight; resolves when that run ends. */
  run(): Promise<void> {
    if (!this.running) {
      this.running = this.execute();
      return this.running;
    }
    if (!this.queued) {
      const after = this.running.catch(() => undefined);
      this.queued = after.then(() => {
        this.queued = undefined;
        this.running = this.execute();
        return this.running;
      });
    }
    return this.queued;
  }

  /** True while a run is in flight or queued. */
  get busy(): boolean {
    return this.running !== undefined || this.queued !== undefined;
  }

  private async execute(): Promise<void> {
    try {
      await this.task();
    } finally {
      this.running = undefined;
    }
  }
}

/** Allows at most `max` events within a sliding window of `windowMs`. */
export class RestartBudget {
  private times: number[] = [];

  constructor(
    private max: number,
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  setMax(max: number): void {
    this.max = max;
  }

  /** Record an attempt; false when the budget for the window is spent. */
  tryTake(): boolean {
    const t = this.now();
    this.times = this.times.filter((x) => t - x < this.windowMs);
    if (this.times.length >= this.max) return false;
    this.times.push(t);
    return true;
  }

  reset(): void {
    this.times = [];
  }
}
