// Validates Flux and cert-manager objects with the JSON-schema validators that the
// @kubernetes-models packages generate from those projects' API types (types, required
// fields, enums, patterns; NOT unknown fields: the generated schemas allow extra keys).
//
// Protocol (driven by flux/ci/fluxcheck/crs.py): stdin is a JSON array of
// {"id": string, "object": {...}}; stdout is a JSON array of
// {"id": string, "errors": [string, ...]} in the same order. Exit 0 unless the input
// itself cannot be read.
//
// hack/check-flux.sh copies this file next to the node_modules it installs under
// target/, because ES modules resolve packages relative to the importing file.

const PACKAGES = [
  // [apiVersion group suffix, npm package]
  ["toolkit.fluxcd.io", "@kubernetes-models/flux-cd"],
  ["cert-manager.io", "@kubernetes-models/cert-manager"],
];

function packageFor(apiVersion) {
  const group = apiVersion.includes("/") ? apiVersion.split("/")[0] : "";
  for (const [suffix, pkg] of PACKAGES) {
    if (group === suffix || group.endsWith("." + suffix)) return pkg;
  }
  return null;
}

const moduleCache = new Map();

async function modelFor(apiVersion, kind) {
  const pkg = packageFor(apiVersion);
  if (pkg === null) return { error: `no validator package for apiVersion ${apiVersion}` };
  const specifier = `${pkg}/${apiVersion}`;
  if (!moduleCache.has(specifier)) {
    try {
      moduleCache.set(specifier, await import(specifier));
    } catch (e) {
      moduleCache.set(specifier, null);
    }
  }
  const mod = moduleCache.get(specifier);
  if (mod === null) return { error: `${pkg} has no schemas for apiVersion ${apiVersion}` };
  const Model = mod[kind];
  if (typeof Model !== "function" || typeof Model.prototype.validate !== "function") {
    return { error: `${pkg} has no kind ${kind} in ${apiVersion}` };
  }
  return { Model };
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

const input = JSON.parse(await readStdin());
const results = [];
for (const { id, object } of input) {
  const errors = [];
  const { Model, error } = await modelFor(String(object.apiVersion ?? ""), String(object.kind ?? ""));
  if (error) {
    errors.push(error);
  } else {
    try {
      new Model(object).validate();
    } catch (e) {
      // ajv reports "data/spec/interval must ..." lines joined by ", ".
      errors.push(String(e.message ?? e).replaceAll("data/", "/"));
    }
  }
  results.push({ id, errors });
}
process.stdout.write(JSON.stringify(results));
