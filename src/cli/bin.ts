// The `gpuwb` executable (dist/cli.js): runs main and sets the exit code.
import { EXIT, main } from "./gpuwb";

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`gpuwb: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = EXIT.failed;
  },
);
