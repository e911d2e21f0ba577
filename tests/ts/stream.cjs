// One streamed request through the official TypeScript SDK's MessageStream helper; prints what the SDK
// assembled and every delta it reported, as JSON, for tests/test_ts_sdk.py to compare.
// Usage: node stream.cjs NODE_MODULES BASE_URL REQUEST_JSON
const path = require("path");
const [modules, baseURL, requestJson] = process.argv.slice(2);
const Anthropic = require(path.join(modules, "@anthropic-ai/sdk")).default;

async function main() {
  const client = new Anthropic({ baseURL, apiKey: "not-needed", maxRetries: 0 });
  const stream = client.messages.stream(JSON.parse(requestJson));
  const text = [];
  const inputJson = [];
  const events = [];
  stream.on("text", (delta) => text.push(delta));
  stream.on("inputJson", (partial, snapshot) => inputJson.push({ partial, snapshot }));
  stream.on("streamEvent", (event) => events.push(event.type));
  const message = await stream.finalMessage();
  console.log(JSON.stringify({ message, text, inputJson, events }));
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(1);
});
