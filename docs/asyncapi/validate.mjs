// Validates AsyncAPI documents with the official parser; prints diagnostics, exits 1 on errors.
import { readFileSync } from "node:fs";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";

const parser = new Parser();
let failed = false;
for (const file of process.argv.slice(2)) {
  const { document, diagnostics } = await parser.parse(readFileSync(file, "utf8"));
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
  for (const d of errors) console.log(`${file}: ${d.code}: ${d.message} at ${d.path.join(".")}`);
  if (!document || errors.length) failed = true;
  else console.log(`${file}: valid (${document.channels().length} channels, ${document.messages().length} messages)`);
}
process.exit(failed ? 1 : 0);
