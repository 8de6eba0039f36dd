// One chat completion through the official `openai` Node SDK, for tests/e2e/test_clients_node.py.
//
// Usage: node chat.mjs [--stream] [--base-url URL] [--api-key KEY] [--thread ID] [--resource ID]
//                      [--model MODEL] [--message TEXT]
// Each option falls back to an env variable: MEMGATE_BASE_URL, MEMGATE_API_KEY, MEMGATE_THREAD_ID,
// MEMGATE_RESOURCE_ID, MEMGATE_MODEL, MEMGATE_MESSAGE, MEMGATE_STREAM=1.
// Prints one JSON line: {"content", "chunks" (streams only), "finish_reason", "id", "sdk_version"}.
// On an API error prints {"error": {"status", "message"}} and exits 1.
import { readFileSync } from "node:fs";
import OpenAI from "openai";

function parseArgs(argv) {
  const opts = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--stream") {
      opts.stream = true;
    } else if (arg.startsWith("--")) {
      const [name, inline] = arg.slice(2).split(/=(.*)/s, 2);
      const value = inline !== undefined ? inline : argv[++i];
      if (value === undefined) throw new Error(`missing value for --${name}`);
      opts[name] = value;
    } else {
      throw new Error(`unexpected argument: ${arg}`);
    }
  }
  return opts;
}

const args = parseArgs(process.argv.slice(2));
const env = process.env;
const config = {
  baseURL: args["base-url"] ?? env.MEMGATE_BASE_URL,
  apiKey: args["api-key"] ?? env.MEMGATE_API_KEY,
  thread: args.thread ?? env.MEMGATE_THREAD_ID,
  resource: args.resource ?? env.MEMGATE_RESOURCE_ID,
  model: args.model ?? env.MEMGATE_MODEL ?? "fake/gpt-test",
  message: args.message ?? env.MEMGATE_MESSAGE,
  stream: args.stream ?? ["1", "true"].includes(env.MEMGATE_STREAM ?? ""),
};
for (const name of ["baseURL", "apiKey", "message"]) {
  if (!config[name]) {
    console.error(`chat.mjs: ${name} is required`);
    process.exit(2);
  }
}

const sdkVersion = JSON.parse(
  readFileSync(new URL("./node_modules/openai/package.json", import.meta.url), "utf8"),
).version;
const client = new OpenAI({ baseURL: config.baseURL, apiKey: config.apiKey, maxRetries: 0, timeout: 30_000 });
const headers = {};
if (config.thread) headers["x-thread-id"] = config.thread;
if (config.resource) headers["x-resource-id"] = config.resource;
const body = { model: config.model, messages: [{ role: "user", content: config.message }] };

try {
  let result;
  if (config.stream) {
    const stream = await client.chat.completions.create({ ...body, stream: true }, { headers });
    let content = "";
    let chunks = 0;
    let contentChunks = 0;
    let finishReason = null;
    let id = null;
    for await (const chunk of stream) {
      chunks++;
      id ??= chunk.id;
      const choice = chunk.choices[0];
      if (!choice) continue;
      if (choice.delta?.content) {
        content += choice.delta.content;
        contentChunks++;
      }
      finishReason = choice.finish_reason ?? finishReason;
    }
    result = { content, chunks, content_chunks: contentChunks, finish_reason: finishReason, id };
  } else {
    const completion = await client.chat.completions.create(body, { headers });
    const choice = completion.choices[0];
    result = { content: choice.message.content, finish_reason: choice.finish_reason, id: completion.id };
  }
  console.log(JSON.stringify({ ...result, sdk_version: sdkVersion }));
} catch (err) {
  if (err instanceof OpenAI.APIError) {
    console.log(JSON.stringify({ error: { status: err.status ?? null, message: err.message }, sdk_version: sdkVersion }));
    process.exit(1);
  }
  throw err;
}
