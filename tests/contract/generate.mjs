// Turn the official JS client's declarations into JSON Schemas (run by regenerate.py).
// usage: node generate.mjs <dir with node_modules and entry.ts> <output dir>
import { createRequire } from "node:module";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

const [root, out] = process.argv.slice(2);
const require = createRequire(join(root, "package.json"));
const { createGenerator } = require("ts-json-schema-generator");

const strict = [
  "GetLlmModelDeployment",
  "GetLlmModelDeploymentResponse",
  "ListLlmModelDeploymentsResponse",
  "CreateLlmModelDeploymentRequest",
  "UpdateLlmModelDeploymentRequest",
];
const lenient = ["GetLlmModelDeployment", "ListLlmModelDeploymentsResponse"];

// strict: additionalProperties false everywhere, exactly what the client declares.
const generator = createGenerator({
  path: join(root, "entry.ts"),
  skipTypeCheck: true,
  expose: "none",
  topRef: false,
  jsDoc: "extended",
  additionalProperties: false,
});

// lenient: the same schema with extra keys allowed (what a newer API may add). Derived from the strict
// one rather than generated with additionalProperties: true, which turns the pagination's boolean and
// number into empty objects (ts-json-schema-generator 2.4.0).
function allowExtraKeys(node) {
  if (Array.isArray(node)) return node.map(allowExtraKeys);
  if (node === null || typeof node !== "object") return node;
  return Object.fromEntries(
    Object.entries(node)
      .filter(([key, value]) => !(key === "additionalProperties" && value === false))
      .map(([key, value]) => [key, allowExtraKeys(value)]),
  );
}

const write = (name, schema) => writeFileSync(join(out, `${name}.json`), JSON.stringify(schema, null, 2) + "\n");
for (const type of strict) {
  const schema = generator.createSchema(type);
  write(`strict.${type}`, schema);
  if (lenient.includes(type)) write(`lenient.${type}`, allowExtraKeys(schema));
}
