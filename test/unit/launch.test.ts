import assert from "node:assert/strict";
import * as path from "node:path";
import { test } from "node:test";
import { backendLaunch } from "../../src/backend/launch";

test("the bundled backend comes first on PYTHONPATH and the user's path is kept", () => {
  const l = backendLaunch("/usr/bin/python3", "/ext/server-python", { PYTHONPATH: "/mine", HOME: "/h" });
  assert.equal(l.command, "/usr/bin/python3");
  assert.deepEqual(l.args, ["-u", "-m", "gpu_workbench"]);
  assert.equal(l.env.PYTHONPATH, `/ext/server-python${path.delimiter}/mine`);
  assert.equal(l.env.HOME, "/h");
  const bare = backendLaunch("python3", "/ext/server-python", {});
  assert.equal(bare.env.PYTHONPATH, "/ext/server-python");
});
