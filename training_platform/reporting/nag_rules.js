// Which cdk-nag rules apply to which stack: loads every template of a cloud assembly with
// cloudformation-include and runs the named packs over it, recording for each rule the resources
// it returned anything but N/A for, and what it returned. The findings a reviewer reads are not
// taken from here: validation-report.json, written by the real synth over the real construct
// tree, is the authority. This answers "which rules did the pack evaluate against resources of
// this stack, and did they comply" so that the report can list the rules that passed.
//
// Usage: node nag_rules.js <assembly dir> <pack name>...   (prints JSON on stdout)
'use strict';
const fs = require('fs');
const path = require('path');
const cdk = require('aws-cdk-lib');
const { CfnInclude } = require('aws-cdk-lib/cloudformation-include');
const nag = require('cdk-nag');

const [assembly, ...wanted] = process.argv.slice(2);
// cloudformation-include cannot parse cross-stack references (Fn::ImportValue of a token,
// Fn::GetStackOutput): they are replaced with an opaque string, which rules treat as they treat
// any value they cannot see into.
function withoutCrossStackReferences(value) {
  if (Array.isArray(value)) return value.map(withoutCrossStackReferences);
  if (value && typeof value === 'object') {
    const keys = Object.keys(value);
    if (keys.length === 1 && (keys[0] === 'Fn::GetStackOutput' || keys[0] === 'Fn::ImportValue')) {
      return 'cross-stack-reference';
    }
    return Object.fromEntries(keys.map((k) => [k, withoutCrossStackReferences(value[k])]));
  }
  return value;
}

const staging = fs.mkdtempSync(path.join(require('os').tmpdir(), 'nag-templates-'));
const app = new cdk.App();
// Every stack of the assembly and of its nested assemblies (a pipeline's stages), by artifact id.
function include(directory) {
  const manifest = JSON.parse(fs.readFileSync(path.join(directory, 'manifest.json'), 'utf8'));
  for (const [id, artifact] of Object.entries(manifest.artifacts)) {
    if (artifact.type === 'cdk:cloud-assembly') {
      include(path.join(directory, artifact.properties.directoryName));
      continue;
    }
    if (artifact.type !== 'aws:cloudformation:stack') continue;
    const template = JSON.parse(
      fs.readFileSync(path.join(directory, artifact.properties.templateFile), 'utf8'));
    const templateFile = path.join(staging, `${id}.template.json`);
    fs.writeFileSync(templateFile, JSON.stringify(withoutCrossStackReferences(template)));
    const stack = new cdk.Stack(app, id);
    new CfnInclude(stack, 'Template', { templateFile });
  }
}
include(assembly);

// The pack classes cdk-nag exports, by the name they report under.
const packs = {};
for (const exported of Object.values(nag)) {
  if (typeof exported === 'function' && exported.prototype instanceof nag.NagPack) {
    packs[new exported().name] = exported;
  }
}

const result = { version: require('cdk-nag/package.json').version, packs: {}, outcomes: [] };
for (const name of wanted) {
  const Pack = packs[name];
  if (!Pack) continue;
  const rules = {};
  class Recording extends Pack {
    applyRule(params) {
      const id = `${this.packName}-${params.ruleSuffixOverride ?? params.rule.name}`;
      rules[id] = { level: params.level, info: params.info };
      let outcome;
      try {
        outcome = params.rule(params.node);
      } catch (error) {
        outcome = 'Error';
      }
      if (outcome === nag.NagRuleCompliance.NOT_APPLICABLE) return;
      result.outcomes.push({
        stack: cdk.Stack.of(params.node).node.id,
        pack: name,
        rule: id,
        logicalId: params.node.node.id,
        compliant: outcome === nag.NagRuleCompliance.COMPLIANT,
      });
    }
  }
  new Recording().validateScope(app);
  result.packs[name] = rules;
}
process.stdout.write(JSON.stringify(result));
fs.rmSync(staging, { recursive: true, force: true });
