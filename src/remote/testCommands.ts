/**
 * Hidden commands (not contributed) that let integration tests read the remote state the
 * UI shows. Free of `vscode` so the test bundle can import the names. Prompts (host key,
 * sync confirmation) are answered through the GPU machines' queue (VM_TEST_COMMANDS.script).
 */
export const REMOTE_TEST_COMMANDS = {
  /** () → RemoteTestState. */
  state: "_gpuWorkbench.remote.state",
  /** (uri: string) → the document's Binding ({kernelId, target}) or undefined. */
  binding: "_gpuWorkbench.remote.binding",
} as const;

export interface RemoteTestState {
  machines: import("../protocol").RemoteMachine[];
  autostop: Record<string, import("../protocol").RemoteAutostopInfo>;
  errors: Record<string, string>;
  /** Flow events: "ssh/nsvm: connect", "ssh/nsvm: host key trusted", state changes. */
  log: string[];
  status: { visible: boolean; text: string; tooltip: string; machine: string | undefined };
}
