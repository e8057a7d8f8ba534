/**
 * Hidden commands (not contributed, no palette entry) that let integration tests, which run
 * in their own bundle, read what the checkpoint views show and act as a user would.
 * Free of `vscode` so the test bundle can import the names alone.
 */
export const CHECKPOINT_TEST_COMMANDS = {
  /**
   * (path?) → InspectorRenderedState of that file's inspector (else the active one), after
   * loading; a `gpuwb-remote:` URI string names a file on a machine.
   */
  editorState: "_gpuWorkbench.checkpoints.editorState",
  /** (drive, path?) → drives the inspector's view as a user would. */
  driveEditor: "_gpuWorkbench.checkpoints.driveEditor",
  /** (tensors: string[] | null, path?) → runs statistics in the inspector, as its buttons do. */
  editorStats: "_gpuWorkbench.checkpoints.editorStats",
  /** () → DiffRenderedState of the active diff panel, after comparing. */
  diffState: "_gpuWorkbench.checkpoints.diffState",
  /** (drive) → drives the diff view. */
  driveDiff: "_gpuWorkbench.checkpoints.driveDiff",
  /** (settle?: boolean) → CheckpointTreeRow[] as the view shows them. */
  treeItems: "_gpuWorkbench.checkpoints.treeItems",
  /** () → RemoteTreeRow[]: the remote roots and their rows as the view shows them (listing them). */
  remoteTree: "_gpuWorkbench.checkpoints.remoteTree",
} as const;
