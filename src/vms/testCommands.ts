/**
 * Hidden commands (not contributed) that let integration tests read what the machine views
 * show and answer the prompts. Free of `vscode` so the test bundle can import the names.
 */
export const VM_TEST_COMMANDS = {
  /** (refresh?: boolean) → VmTreeRow[] as the view shows them. */
  treeItems: "_gpuWorkbench.vms.treeItems",
  /** () → VmStatusSnapshot of the cost status item (after an update). */
  statusItem: "_gpuWorkbench.vms.statusItem",
  /** (answers: (string|null)[]) → queue answers for the next prompts (not in Production mode). */
  script: "_gpuWorkbench.vms.script",
  /** () → string[]: prompts shown since the last call (cleared). */
  prompts: "_gpuWorkbench.vms.prompts",
  /** () → the managed ssh config file's path. */
  sshConfigPath: "_gpuWorkbench.vms.sshConfigPath",
  /** (text) → the text as the log would record it (redacted). */
  redact: "_gpuWorkbench.vms.redact",
  /** (dryRun?: boolean) → string[]: remote authorities Open in Remote-SSH opened since the last call (cleared); dryRun: record only (not in Production mode). */
  remoteWindows: "_gpuWorkbench.vms.remoteWindows",
} as const;
