// Checkpoints on remote machines: URI paths, saved roots, grouping of a machine's listing.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  addRoot,
  entriesOfListing,
  folderProblem,
  loadRoots,
  parseRemoteUriPath,
  remoteUriPath,
  removeRoot,
  rootLabel,
  tidyFolder,
  whereInRoot,
} from "../../src/checkpoints/remoteNames";

test("a remote file's URI path round-trips, machine parts escaped", () => {
  const file = { machine: "ssh/nsckpt", path: "/tmp/run 1/model.safetensors" };
  const p = remoteUriPath(file);
  assert.equal(p, "/ssh/nsckpt/tmp/run 1/model.safetensors");
  assert.deepEqual(parseRemoteUriPath(p), file);
  const odd = { machine: "lambda/i-1/2", path: "/a/b.pt" };
  assert.equal(remoteUriPath(odd), "/lambda/i-1%2F2/a/b.pt");
  assert.deepEqual(parseRemoteUriPath(remoteUriPath(odd)), odd);
  assert.equal(remoteUriPath({ machine: "ssh/h", path: "/a/../b/./c.pt" }), "/ssh/h/b/c.pt");
});

test("malformed remote names are refused", () => {
  assert.throws(() => remoteUriPath({ machine: "nomachine", path: "/a.pt" }), /Not a machine/);
  assert.throws(() => remoteUriPath({ machine: "ssh/h", path: "a.pt" }), /Not an absolute path/);
  assert.equal(parseRemoteUriPath("/ssh/h"), undefined);
  assert.equal(parseRemoteUriPath("/ssh/%E0%A4%A/x.pt"), undefined);
  assert.equal(parseRemoteUriPath("ssh/h/x.pt"), undefined);
});

test("folders are checked and tidied as typed", () => {
  assert.equal(folderProblem("/data/ckpt"), undefined);
  assert.equal(folderProblem("~"), undefined);
  assert.equal(folderProblem("~/runs"), undefined);
  assert.match(folderProblem("") ?? "", /Give a folder/);
  assert.match(folderProblem("runs/x") ?? "", /absolute/);
  assert.match(folderProblem("~user/x") ?? "", /absolute/);
  assert.equal(tidyFolder(" /data/ckpt/ "), "/data/ckpt");
  assert.equal(tidyFolder("/data//x/../y"), "/data/y");
  assert.equal(tidyFolder("/"), "/");
  assert.equal(tidyFolder("~"), "~");
  assert.equal(rootLabel("gpu-box", "~/runs"), "gpu-box: ~/runs");
});

test("saved roots keep only well-formed ones, once each; add and remove", () => {
  const saved = [
    { machine: "ssh/a", folder: "/x/" },
    { machine: "ssh/a", folder: "/x" },
    { machine: "bad", folder: "/x" },
    { machine: "ssh/b", folder: "relative" },
    { machine: "ssh/b" },
    null,
    "ssh/c:/y",
    { machine: "ssh/b", folder: "~" },
  ];
  const roots = loadRoots(saved);
  assert.deepEqual(roots, [
    { machine: "ssh/a", folder: "/x" },
    { machine: "ssh/b", folder: "~" },
  ]);
  assert.deepEqual(loadRoots(undefined), []);
  assert.deepEqual(loadRoots({ machine: "ssh/a", folder: "/x" }), []);
  assert.equal(addRoot(roots, { machine: "ssh/a", folder: "/x/" }).length, 2);
  const more = addRoot(roots, { machine: "ssh/a", folder: "/y" });
  assert.deepEqual(more[2], { machine: "ssh/a", folder: "/y" });
  assert.deepEqual(removeRoot(more, { machine: "ssh/a", folder: "/x" }), [
    { machine: "ssh/b", folder: "~" },
    { machine: "ssh/a", folder: "/y" },
  ]);
});

test("a machine's listing groups like the workspace's, with POSIX paths", () => {
  const entries = entriesOfListing({
    folder: "/data",
    files: [
      { path: "/data/a.pt", size: 10, mtimeMs: 100 },
      { path: "/data/m/s-1.safetensors", size: 5, mtimeMs: 300 },
      { path: "/data/m/s-2.safetensors", size: 7, mtimeMs: 50 },
    ],
    indexes: [
      {
        path: "/data/m/model.safetensors.index.json",
        size: 1,
        mtimeMs: 20,
        shards: ["s-1.safetensors", "s-2.safetensors"],
      },
    ],
    truncated: false,
  });
  assert.deepEqual(
    entries.map((e) => [e.kind, e.label, e.size, e.mtimeMs]),
    [
      ["sharded", "m/", 13, 300],
      ["file", "a.pt", 10, 100],
    ],
  );
  assert.deepEqual(entries[0]?.files, [
    "/data/m/model.safetensors.index.json",
    "/data/m/s-1.safetensors",
    "/data/m/s-2.safetensors",
  ]);
  assert.equal(whereInRoot("/data", entries[1] ?? assert.fail()), "");
  assert.equal(whereInRoot("/data", entries[0] ?? assert.fail()), "");
  const deep = { path: "/data/x/y/w.pt", kind: "file" as const, label: "w.pt", size: 1, mtimeMs: 1, files: [] };
  assert.equal(whereInRoot("/data", deep), "x/y");
  assert.equal(whereInRoot("/home/u", { ...deep, path: "/elsewhere/w.pt" }), "/elsewhere");
});
