/**
 * Hidden commands (not contributed) that let integration tests read what the GPU status
 * item and webviews show. Free of `vscode` so the test bundle can import the names.
 */
export const GPU_TEST_COMMANDS = {
  /** () → GpuStatusSnapshot of the status item. */
  statusItem: "_gpuWorkbench.gpu.statusItem",
  /** () → GpuPanelRenderedState of the GPU panel (a round trip through its webview), or undefined. */
  panelState: "_gpuWorkbench.gpu.panelState",
  /** () → GpuCheckRenderedState of the check report, after the check under way ends, or undefined. */
  checkState: "_gpuWorkbench.gpu.checkState",
  /** () → string[]: critical notifications shown since the last call (cleared). */
  notifications: "_gpuWorkbench.gpu.notifications",
  /** () → string[]: who watches now (the backend samples while this is not empty). */
  watchers: "_gpuWorkbench.gpu.watchers",
  /** () → boolean: cancel the check under way, as its notification's Cancel button does. */
  cancelCheck: "_gpuWorkbench.gpu.cancelCheck",
  /** () → the Markdown the export would open (header note included), or undefined. */
  exportText: "_gpuWorkbench.gpu.exportText",
  /** (machine: "" | "provider/id") → the machine the GPU panel shows after picking it, as its picker does. */
  pickPanelMachine: "_gpuWorkbench.gpu.pickPanelMachine",
} as const;
