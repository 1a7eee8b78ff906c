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
const manifest = JSON.parse(fs.readFileSync(path.join(assembly, 'manifest.json'), 'utf8'));
const app = new cdk.App();
for (const [id, artifact] of Object.entries(manifest.artifacts)) {
  if (artifact.type !== 'aws:cloudformation:stack') continue;
  const stack = new cdk.Stack(app, id);
  new CfnInclude(stack, 'Template', {
    templateFile: path.join(assembly, artifact.properties.templateFile),
  });
}

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
