// Wraps a dashboard JSON (default ../turnout.json) as TypeScript that must satisfy
// Grafana's own Dashboard type (@grafana/schema, see turnout-dashboard.ts), so that
// `tsc --noEmit --strict` type-checks the dashboard. Usage: node wrap.mjs [in.json] [out.ts]
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const input = resolve(process.argv[2] ?? resolve(here, "../turnout.json"));
const output = resolve(process.argv[3] ?? resolve(here, "generated/dashboard.ts"));
const json = readFileSync(input, "utf8");
JSON.parse(json); // a JSON syntax error is reported here, with its position
mkdirSync(dirname(output), { recursive: true });
writeFileSync(
  output,
  `import type { TurnoutDashboard } from "../turnout-dashboard.js";\n\n` +
    `export const d = ${json.trim()} satisfies TurnoutDashboard;\n`,
);
