// Turn the official JS client's declarations into JSON Schemas (run by regenerate.py).
// usage: node generate.mjs <dir with node_modules and entry.ts> <output dir>
import { createRequire } from "node:module";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

const [root, out] = process.argv.slice(2);
const require = createRequire(join(root, "package.json"));
const { createGenerator } = require("ts-json-schema-generator");

// strict: additionalProperties false everywhere (exactly what the client declares);
// lenient: extra keys allowed (what a newer API may add and the operator must tolerate).
const wanted = {
  strict: [
    "GetLlmModelDeployment",
    "GetLlmModelDeploymentResponse",
    "ListLlmModelDeploymentsResponse",
    "CreateLlmModelDeploymentRequest",
    "UpdateLlmModelDeploymentRequest",
  ],
  lenient: ["GetLlmModelDeployment", "ListLlmModelDeploymentsResponse"],
};

for (const [variant, types] of Object.entries(wanted)) {
  const generator = createGenerator({
    path: join(root, "entry.ts"),
    skipTypeCheck: true,
    expose: "none",
    topRef: false,
    jsDoc: "extended",
    additionalProperties: variant === "lenient",
    sortProps: true,
  });
  for (const type of types) {
    const schema = generator.createSchema(type);
    writeFileSync(join(out, `${variant}.${type}.json`), JSON.stringify(schema, null, 2) + "\n");
  }
}
