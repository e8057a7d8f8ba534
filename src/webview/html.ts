/**
 * The HTML shell every webview shares: a strict CSP (no inline script, a nonce on the one
 * bundle, nothing remote), assets through `asWebviewUri`, and options that limit local
 * resources to the bundles and the styles. Data never goes into the HTML: it is posted.
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

export interface PageSpec {
  /** Bundle name: dist/media/<script>.js. */
  script: string;
  /** Stylesheet name: media/<style>.css. */
  style: string;
  title: string;
  /** Static markup (no data). */
  body: string;
}

/**
 * The page. Outputs rendered as `srcdoc` iframes (results panel) are not fetched, so
 * frame-src does not apply to them; they inherit this policy and can run no script.
 */
export function webviewHtml(webview: vscode.Webview, extensionUri: vscode.Uri, page: PageSpec): string {
  const nonce = randomBytes(18).toString("base64");
  const src = webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, "dist", "media", `${page.script}.js`));
  const style = webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, "media", `${page.style}.css`));
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
<title>${escapeHtml(page.title)}</title>
</head>
<body>
${page.body}
<script nonce="${nonce}" src="${src}"></script>
</body>
</html>`;
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * Round trips that ask a webview what it shows (for tests): each query gets an id, the
 * view answers with it, and an unanswered query fails after a timeout.
 */
export class StateQueries<T> {
  private next = 1;
  private readonly pending = new Map<number, (state: T) => void>();

  constructor(private readonly what: string) {}

  ask(send: (requestId: number) => void, timeoutMs: number): Promise<T> {
    const requestId = this.next++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new Error(`The ${this.what} did not answer`));
      }, timeoutMs);
      this.pending.set(requestId, (s) => {
        clearTimeout(timer);
        resolve(s);
      });
      send(requestId);
    });
  }

  /** The view's answer to query `requestId`. */
  answer(requestId: number, state: T): void {
    const done = this.pending.get(requestId);
    this.pending.delete(requestId);
    done?.(state);
  }
}
