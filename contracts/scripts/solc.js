// Run the pinned solc-js on a standard-JSON input read from stdin; print the output JSON.
// Imports resolve against the node_modules directory given as argv[2] (the testbed cache).
"use strict";
const fs = require("fs");
const path = require("path");
const modules = process.argv[2];
const solc = require(path.join(modules, "solc"));
const input = fs.readFileSync(0, "utf8");
function findImports(p) {
  const full = path.join(modules, p);
  if (!full.startsWith(modules + path.sep) || !fs.existsSync(full)) return { error: "import not found: " + p };
  return { contents: fs.readFileSync(full, "utf8") };
}
const output = solc.compile(input, { import: findImports });
process.stdout.write(JSON.stringify({ version: solc.version(), output: JSON.parse(output) }));
