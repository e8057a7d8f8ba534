/**
 * The HTML shell of the checkpoint webviews: a strict CSP (no inline script, a nonce on the
 * one bundle, nothing remote), assets through `asWebviewUri`, and options that limit local
 * resources to the bundle and the styles.
 */
import { randomBytes } from "node:crypto";
import * as vscode from "vscode";

export function webviewOptions(extensionUri: vscode.Uri): vscode.WebviewOptions & vscode.WebviewPanelOptions {
  return {
    enableScripts: true,
    enableCommandUris: false,
    localResourceRoots: [
      vscode.Uri.joinPath(extensionUri, "dist", "media"),
      vscode.Uri.joinPath(extensionUri, "media"),
    ],
  };
}

/** A page with `body` (static markup, no data), `script` from dist/media and checkpoint.css. */
export function webviewHtml(
  webview: vscode.Webview,
  extensionUri: vscode.Uri,
  script: string,
  title: string,
  body: string,
): string {
  const nonce = randomBytes(18).toString("base64");
  const src = webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, "dist", "media", `${script}.js`));
  const style = webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, "media", "checkpoint.css"));
  const csp = [
    "default-src 'none'",
    `img-src ${webview.cspSource} data:`,
    `style-src ${webview.cspSource}`,
    `font-src ${webview.cspSource}`,
    `script-src 'nonce-${nonce}'`,
    "frame-src 'none'",
    "form-action 'none'",
    "base-uri 'none'",
  ].join("; ");
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${style}">
<title>${escapeHtml(title)}</title>
</head>
<body>
${body}
<script nonce="${nonce}" src="${src}"></script>
</body>
</html>`;
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
