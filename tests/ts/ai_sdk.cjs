// One call through the Vercel AI SDK (`ai` with `@ai-sdk/openai`'s Responses model) against parley; prints
// what the SDK returned as JSON, for tests/test_ai_sdk.py to check.
// Usage: node ai_sdk.cjs NODE_MODULES BASE_URL MODEL CASE   (CASE: text | stream | tool | stream-tool | object)
const path = require("path");
const [modules, baseURL, modelId, which] = process.argv.slice(2);
const ai = require(path.join(modules, "ai"));
const { createOpenAI } = require(path.join(modules, "@ai-sdk/openai"));
const { z } = require(path.join(modules, "zod"));

const openai = createOpenAI({ baseURL, apiKey: "not-needed" });
const model = openai.responses(modelId);
const common = { model, temperature: 0, maxRetries: 0 };

const weather = ai.tool({
  description: "Current weather in a city, for the next few days",
  inputSchema: z.object({ city: z.string(), days: z.number().int() }),
  // no execute: the call is returned to the caller, as an agent would take it
});
const toolCall = {
  ...common,
  tools: { get_weather: weather },
  toolChoice: { type: "tool", toolName: "get_weather" }, // forced: the greedy 0.5B model must call it
  maxOutputTokens: 100,
  prompt: "What will the weather be in Paris for the next 3 days?",
};
const city = z.object({ name: z.string(), country: z.string() });

const cases = {
  async text() {
    const r = await ai.generateText({ ...common, maxOutputTokens: 40, prompt: "Count from one to five, in words." });
    return { text: r.text, finishReason: r.finishReason, usage: r.usage, responseId: r.response.id };
  },
  async stream() {
    const r = ai.streamText({ ...common, maxOutputTokens: 40, prompt: "Count from one to five, in words." });
    const deltas = [];
    const parts = [];
    for await (const part of r.fullStream) {
      parts.push(part.type);
      if (part.type === "text-delta") deltas.push(part.text);
      if (part.type === "error") throw part.error;
    }
    return { deltas, parts, text: await r.text, finishReason: await r.finishReason, usage: await r.usage };
  },
  async tool() {
    const r = await ai.generateText(toolCall);
    return { toolCalls: r.toolCalls.map(({ toolName, toolCallId, input }) => ({ toolName, toolCallId, input })),
             finishReason: r.finishReason, usage: r.usage };
  },
  async "stream-tool"() {
    const r = ai.streamText(toolCall);
    const parts = [];
    const inputDeltas = [];
    for await (const part of r.fullStream) {
      parts.push(part.type);
      if (part.type === "tool-input-delta") inputDeltas.push(part.delta);
      if (part.type === "error") throw part.error;
    }
    const toolCalls = (await r.toolCalls).map(({ toolName, toolCallId, input }) => ({ toolName, toolCallId, input }));
    return { toolCalls, parts, inputDeltas, finishReason: await r.finishReason };
  },
  async object() {
    const r = await ai.generateObject({ ...common, schema: city, maxOutputTokens: 100,
                                        prompt: "Describe a famous city: its name and its country." });
    // The SDK validated it against the schema already (it throws otherwise); checked again in Python.
    return { object: r.object, finishReason: r.finishReason, usage: r.usage };
  },
};

cases[which]()
  .then((out) => console.log(JSON.stringify(out)))
  .catch((err) => {
    const detail = { message: String(err && err.message), name: err && err.name, statusCode: err && err.statusCode,
                     responseBody: err && err.responseBody, cause: err && err.cause && String(err.cause) };
    console.error(JSON.stringify(detail));
    console.error(err && err.stack ? err.stack : String(err));
    process.exit(1);
  });
