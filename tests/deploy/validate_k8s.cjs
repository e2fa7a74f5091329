// Validates Kubernetes objects against the OpenAPI schemas shipped in the npm
// packages kubernetes-models and @kubernetes-models/prometheus-operator.
//
// Usage: node validate_k8s.cjs OBJECTS.json
// OBJECTS.json holds [{"source": "...", "object": {...}}, ...]. Prints one
// line per object; exits 1 when any object fails or has no known model.
//
// The schemas reject wrong types, missing required fields and bad enum
// values, but they allow unknown fields, so a misspelt optional field passes;
// the Python side of the test checks the fields this project relies on.
"use strict";

const fs = require("fs");

function modelFor(apiVersion, kind) {
  const slash = apiVersion.indexOf("/");
  const group = slash < 0 ? "" : apiVersion.slice(0, slash);
  const version = slash < 0 ? apiVersion : apiVersion.slice(slash + 1);
  let modulePath;
  if (group === "monitoring.coreos.com") {
    modulePath = `@kubernetes-models/prometheus-operator/${group}/${version}`;
  } else if (group === "") {
    modulePath = `kubernetes-models/${version}`;
  } else {
    modulePath = `kubernetes-models/${group}/${version}`;
  }
  let mod;
  try {
    mod = require(modulePath);
  } catch (e) {
    return null;
  }
  return mod[kind] || null;
}

function validate(object) {
  const Model = modelFor(object.apiVersion || "", object.kind || "");
  if (!Model) return `no model for ${object.apiVersion} ${object.kind}`;
  try {
    new Model(object).validate();
    return null;
  } catch (e) {
    return e.message;
  }
}

// The validator must be able to fail: a Deployment with a string port and
// no selector has to be rejected, or nothing below means anything.
const broken = {
  apiVersion: "apps/v1",
  kind: "Deployment",
  metadata: { name: "broken" },
  spec: { template: { spec: { containers: [{ name: "c", ports: [{ containerPort: "grpc" }] }] } } },
};
if (validate(broken) === null) {
  console.log("FAIL: the schema validator accepted a broken Deployment");
  process.exit(1);
}

const entries = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
let failed = 0;
for (const { source, object } of entries) {
  const error = validate(object);
  const name = `${source}: ${object.kind}/${object.metadata && object.metadata.name}`;
  if (error) {
    failed++;
    console.log(`FAIL ${name}: ${error}`);
  } else {
    console.log(`ok   ${name}`);
  }
}
console.log(`${entries.length - failed} of ${entries.length} objects valid`);
process.exit(failed ? 1 : 0);
