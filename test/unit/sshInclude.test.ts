// The Include line GPU Workbench adds (with consent) to the ssh config Remote-SSH reads: which
// file that is, whether it is already there, and that nothing else in the file changes.
import * as assert from "node:assert/strict";
import { describe, it } from "node:test";
import { expandHome, hasInclude, includeLine, userSshConfigPath, withInclude } from "../../src/vms/sshInclude";

const HOME = "/home/u";
const MANAGED = "/home/u/.config/Code/User/globalStorage/gpu-workbench.gpu-workbench/ssh_config";

describe("ssh Include: which file", () => {
  it("is ~/.ssh/config unless remote.SSH.configFile is a non-empty string", () => {
    for (const s of [undefined, null, "", "   ", 42, {}]) {
      assert.equal(userSshConfigPath(s, HOME), "/home/u/.ssh/config", JSON.stringify(s));
    }
  });

  it("honours remote.SSH.configFile, ~ expanded and made absolute", () => {
    assert.equal(userSshConfigPath("/etc/alt/ssh_config", HOME), "/etc/alt/ssh_config");
    assert.equal(userSshConfigPath(" ~/work/ssh.conf ", HOME), "/home/u/work/ssh.conf");
    assert.equal(userSshConfigPath("~", HOME), "/home/u");
    assert.equal(userSshConfigPath("cfg/ssh", HOME), "/home/u/cfg/ssh");
    assert.equal(expandHome("~other/x", HOME), "~other/x", "only the user's own ~");
  });
});

describe("ssh Include: the line", () => {
  it("names the managed file by its absolute path, quoted when it has spaces", () => {
    assert.equal(includeLine(MANAGED), `Include ${MANAGED}`);
    assert.equal(
      includeLine("/Users/u/Library/Application Support/Code/ssh_config"),
      'Include "/Users/u/Library/Application Support/Code/ssh_config"',
    );
    assert.match(includeLine("relative/ssh_config"), /^Include \//);
  });

  it("is recognised however ssh would read it, and only for the same file", () => {
    assert.ok(hasInclude(`Include ${MANAGED}\n`, MANAGED));
    assert.ok(hasInclude(`  include   ${MANAGED}  # ours\n`, MANAGED));
    assert.ok(hasInclude(`INCLUDE=${MANAGED}\n`, MANAGED));
    assert.ok(hasInclude(`Include /etc/ssh/a.conf "${MANAGED}"\r\n`, MANAGED));
    assert.ok(
      hasInclude(
        `Host x\n  HostName y\nInclude ~/.config/Code/User/globalStorage/gpu-workbench.gpu-workbench/ssh_config\n`,
        MANAGED,
        HOME,
      ),
    );
    assert.ok(!hasInclude(`# Include ${MANAGED}\n`, MANAGED), "a comment is not an Include");
    assert.ok(!hasInclude(`Include ${MANAGED}.bak\n`, MANAGED));
    assert.ok(!hasInclude(`Include /other/ssh_config\nHost ${MANAGED}\n`, MANAGED));
    assert.ok(!hasInclude("", MANAGED));
  });
});

describe("ssh Include: the text", () => {
  const user = "# mine\nHost box\n  HostName 10.1.2.3\n  User me\n";

  it("adds the line once, at the top, and keeps every other byte", () => {
    const once = withInclude(user, MANAGED);
    assert.equal(once, `Include ${MANAGED}\n\n${user}`);
    assert.equal(once.slice(once.indexOf("\n\n") + 2), user);
    assert.equal(withInclude(once, MANAGED), once, "added once");
    // Somewhere else in the file already: left alone.
    const later = `${user}Include ${MANAGED}\n`;
    assert.equal(withInclude(later, MANAGED), later);
  });

  it("keeps CRLF files CRLF and starts an empty file with just the line", () => {
    const crlf = "Host a\r\n  User b\r\n";
    assert.equal(withInclude(crlf, MANAGED), `Include ${MANAGED}\r\n\r\n${crlf}`);
    assert.equal(withInclude("", MANAGED), `Include ${MANAGED}\n`);
  });
});
