// Evaluates IAM requests against policies with @cloud-copilot/iam-simulate, offline.
//
// Reads a JSON array of cases on stdin, each
//   { id, principal, action, resource, accountId, context, identityPolicies, resourcePolicy? }
// (identityPolicies: [{ name, policy }]), and prints a JSON array of
//   { id, result, errors }
// With --serve it keeps going: each line of stdin is one such array, answered by one line, until
// stdin closes (the tests keep one process per worker, instead of starting Node for each test).
// where result is 'Allowed', 'ExplicitlyDenied', 'ImplicitlyDenied' or 'Error'. A request the
// simulator refuses to evaluate (unknown action, a resource type the action does not take, a
// context key it does not know) is an 'Error' with the simulator's reasons, never a denial: a
// matrix of denials must not pass because its requests were malformed.
//
// A test-only tool (tests/stacks/test_iam_simulation.py runs it): the simulator is AGPL-licensed
// and nothing deployed or distributed includes it.
'use strict';
const { runSimulation } = require('@cloud-copilot/iam-simulate');

async function evaluate(item) {
  const simulation = {
    request: {
      principal: item.principal,
      action: item.action,
      resource: { resource: item.resource, accountId: item.accountId },
      contextVariables: item.context || {},
    },
    identityPolicies: item.identityPolicies,
    serviceControlPolicies: [],
    resourceControlPolicies: [],
  };
  if (item.resourcePolicy) simulation.resourcePolicy = item.resourcePolicy;
  const response = await runSimulation(simulation, {});
  if (response.resultType === 'error') {
    return { id: item.id, result: 'Error', errors: response.errors };
  }
  return { id: item.id, result: response.overallResult, errors: null };
}

async function evaluateAll(cases) {
  const results = [];
  for (const item of cases) results.push(await evaluate(item));
  return JSON.stringify(results);
}

async function main() {
  if (process.argv.includes('--serve')) {
    const lines = require('readline').createInterface({ input: process.stdin, terminal: false });
    for await (const line of lines) {
      if (line.trim()) process.stdout.write(`${await evaluateAll(JSON.parse(line))}\n`);
    }
    return;
  }
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  process.stdout.write(await evaluateAll(JSON.parse(Buffer.concat(chunks).toString('utf8'))));
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
