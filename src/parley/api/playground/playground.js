// parley playground: one page that talks to this server's own Anthropic Messages API.
// No build step and no dependencies: fetch + a ReadableStream reader parse the SSE stream.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const KEY_STORAGE = "parley.playground.apiKey";
  const API_VERSION = "2023-06-01";

  const state = {
    history: [],          // the messages sent back to the API on the next turn
    pendingToolUses: [],  // the tool_use blocks of the last answer, when it stopped with tool_use
    controller: null,     // the AbortController of the running request
    lastBody: null,       // the request body of the last answer (what Export gives)
    defaultModel: null,
    models: new Map(),    // id -> the /v1/models entry
  };

  // ---- helpers -----------------------------------------------------------------------------------------

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value);
    }
    node.append(...children);
    return node;
  }

  function apiHeaders() {
    const headers = { "content-type": "application/json", "anthropic-version": API_VERSION };
    const key = $("api-key").value.trim();
    if (key) headers["x-api-key"] = key;
    return headers;
  }

  // The Anthropic error envelope {"type": "error", "error": {"type", "message"}} as one line.
  function describeError(body, status) {
    if (body && body.type === "error" && body.error) {
      return `${body.error.type || "error"}: ${body.error.message || "(no message)"}`;
    }
    return status ? `HTTP ${status}` : "unknown error";
  }

  async function responseError(response) {
    let body = null;
    try {
      body = await response.json();
    } catch (_) { /* not JSON */ }
    return `${describeError(body, response.status)} (HTTP ${response.status})`;
  }

  function showError(message) {
    $("error-text").textContent = message;
    $("error").hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
    $("error-text").textContent = "";
  }

  function setStatus(text, stateName) {
    $("status").textContent = text;
    $("status").dataset.state = stateName;
  }

  function setBusy(busy) {
    $("send").disabled = busy;
    $("stop").disabled = !busy;
    document.body.dataset.busy = busy ? "true" : "false";
  }

  function scrollToEnd(force = false) {
    const box = $("messages");
    if (force || box.scrollHeight - box.scrollTop - box.clientHeight < 120) box.scrollTop = box.scrollHeight;
  }

  // ---- server, models, key -----------------------------------------------------------------------------

  async function loadHealth() {
    try {
      const response = await fetch("/health", { cache: "no-store" });
      const health = await response.json();
      state.defaultModel = health.default_model || null;
      const parts = [health.version ? `${health.server || "server"} v${health.version}` : null];
      if (health.api_key_required) parts.push("API key required");
      $("server-info").textContent = parts.filter(Boolean).join(" · ");
      $("api-key").placeholder = health.api_key_required ? "required by this server" : "not needed on this server";
      document.body.dataset.keyRequired = health.api_key_required ? "true" : "false";
    } catch (err) {
      showError(`Cannot reach the server: ${err.message}`);
    }
  }

  async function loadModels() {
    const select = $("model");
    const wanted = select.value || state.defaultModel;
    const entries = [];
    try {
      let after = null;
      for (let page = 0; page < 20; page++) {
        const query = new URLSearchParams({ limit: "1000" });
        if (after) query.set("after_id", after);
        const response = await fetch(`/v1/models?${query}`, { headers: apiHeaders(), cache: "no-store" });
        if (!response.ok) {
          showError(`Listing models failed — ${await responseError(response)}`);
          break;
        }
        const body = await response.json();
        entries.push(...body.data);
        if (!body.has_more || !body.last_id) break;
        after = body.last_id;
      }
    } catch (err) {
      showError(`Listing models failed — ${err.message}`);
    }
    state.models = new Map(entries.map((m) => [m.id, m]));
    const ids = entries.map((m) => m.id);
    if (!ids.length && state.defaultModel) ids.push(state.defaultModel);
    select.replaceChildren(...ids.map((id) => new Option(id, id)));
    if (wanted && ids.includes(wanted)) select.value = wanted;
    select.dataset.loaded = entries.length ? "true" : "false";
    updateThinkingHint();
  }

  function updateThinkingHint() {
    const info = state.models.get($("model").value);
    const supported = info && info.capabilities && info.capabilities.thinking
      ? info.capabilities.thinking.supported : null;
    $("thinking").parentElement.title = supported === false
      ? "This model's chat template does not reason; the server may reject or ignore thinking." : "";
  }

  let modelReload = null;
  function onKeyInput() {
    localStorage.setItem(KEY_STORAGE, $("api-key").value.trim());
    clearTimeout(modelReload);
    modelReload = setTimeout(() => { clearError(); loadModels(); }, 300);
  }

  // ---- the request ---------------------------------------------------------------------------------------

  function parseTools() {
    const text = $("tools").value.trim();
    if (!text) return null;
    let tools;
    try {
      tools = JSON.parse(text);
    } catch (err) {
      throw new Error(`Tools: invalid JSON — ${err.message}`);
    }
    if (!Array.isArray(tools)) throw new Error("Tools: expected a JSON array of tool definitions");
    return tools.length ? tools : null;
  }

  function checkTools() {
    try {
      parseTools();
      $("tools-error").hidden = true;
      $("tools").classList.remove("invalid");
      return true;
    } catch (err) {
      $("tools-error").textContent = err.message;
      $("tools-error").hidden = false;
      $("tools").classList.add("invalid");
      return false;
    }
  }

  // The request's settings from the form (everything but messages); throws on invalid input.
  function requestSettings() {
    const model = $("model").value;
    if (!model) throw new Error("No model to send to: the model list is empty.");
    const maxTokens = parseInt($("max-tokens").value, 10);
    if (!Number.isFinite(maxTokens) || maxTokens < 1) throw new Error("Max tokens must be a positive integer.");
    const body = { model, max_tokens: maxTokens };
    const system = $("system").value;
    if (system.trim()) body.system = system;
    const temperature = $("temperature").value.trim();
    if (temperature !== "") {
      const t = parseFloat(temperature);
      if (!Number.isFinite(t)) throw new Error("Temperature must be a number.");
      body.temperature = t;
    }
    if ($("thinking").checked) {
      const budget = parseInt($("thinking-budget").value, 10);
      if (!Number.isFinite(budget)) throw new Error("Thinking budget must be an integer.");
      body.thinking = { type: "enabled", budget_tokens: budget };
    }
    const tools = parseTools();
    if (tools) body.tools = tools;
    return body;
  }

  // ---- rendering ---------------------------------------------------------------------------------------

  function addMessage(node) {
    $("empty").hidden = true;
    $("messages").append(node);
    scrollToEnd(true);
    return node;
  }

  function renderUser(message, toolUses) {
    const content = el("div", { class: "content" });
    if (typeof message.content === "string") {
      content.append(el("div", { class: "bubble", "data-testid": "user-text", text: message.content }));
    } else {
      for (const block of message.content) {
        const use = toolUses.find((t) => t.id === block.tool_use_id);
        content.append(el("div", { class: "tool-result", "data-testid": "tool-result" },
          el("div", { class: "tool-head" },
            el("span", { text: "tool_result for" }),
            el("span", { class: "tool-name", text: use ? use.name : "tool" }),
            el("span", { class: "tool-id", text: block.tool_use_id })),
          el("pre", { text: block.content })));
      }
    }
    return addMessage(el("div", { class: "msg user", "data-testid": "user-message" },
      el("div", { class: "role", text: "You" }), content));
  }

  // One assistant answer as it streams: its blocks, its footer and its error line.
  function renderAssistant(model) {
    const blocks = el("div", { class: "blocks", "data-testid": "blocks" });
    const meta = el("div", { class: "meta", "data-testid": "usage" });
    const root = addMessage(el("div", { class: "msg assistant streaming", "data-testid": "assistant-message" },
      el("div", { class: "role", text: `Assistant · ${model}` }), blocks, meta));
    return {
      root,
      meta,
      block(block) {
        let node;
        if (block.type === "text") {
          node = el("div", { class: "block-text", "data-testid": "answer-text" });
        } else if (block.type === "thinking" || block.type === "redacted_thinking") {
          node = el("details", { class: "thinking", "data-testid": "thinking-block", open: "" },
            el("summary", { text: block.type === "thinking" ? "Thinking" : "Thinking (redacted)" }),
            el("div", { class: "thinking-text", "data-testid": "thinking-text" }));
        } else if (block.type === "tool_use") {
          node = el("div", { class: "tool-use", "data-testid": "tool-use" },
            el("div", { class: "tool-head" },
              el("span", { text: "tool_use" }),
              el("span", { class: "tool-name", "data-testid": "tool-name", text: block.name || "" }),
              el("span", { class: "tool-id", "data-testid": "tool-id", text: block.id || "" })),
            el("pre", { class: "tool-input", "data-testid": "tool-input" }));
        } else {
          node = el("pre", { class: "block-other mono", text: JSON.stringify(block, null, 2) });
        }
        blocks.append(node);
        scrollToEnd();
        return node;
      },
      error(message) {
        root.append(el("div", { class: "msg-error", "data-testid": "message-error", text: message }));
        scrollToEnd();
      },
      done() {
        root.classList.remove("streaming");
      },
    };
  }

  function renderMeta(view, run) {
    const parts = [];
    const span = (testid, text, cls) => el("span", { "data-testid": testid, class: cls || "", text });
    if (run.usage.input_tokens != null) parts.push(span("usage-input", `${run.usage.input_tokens} in`));
    const cached = run.usage.cache_read_input_tokens || 0;
    const written = run.usage.cache_creation_input_tokens || 0;
    if (cached) parts.push(span("usage-cache-read", `${cached} cached`));
    if (written) parts.push(span("usage-cache-write", `${written} written to cache`));
    if (run.usage.output_tokens != null) {
      parts.push(span("usage-output", `${run.usage.output_tokens} out`));
    } else if (run.deltas) {
      parts.push(span("usage-output", `≈${run.deltas} out`));
    }
    const end = run.endedAt || performance.now();
    const out = run.usage.output_tokens != null ? run.usage.output_tokens : run.deltas;
    if (out && run.firstAt) {
      const decode = (end - run.firstAt) / 1000;
      const rate = out > 1 && decode > 0 ? (out - 1) / decode : out / ((end - run.startedAt) / 1000);
      parts.push(span("tps", `${rate.toFixed(1)} tok/s`));
      parts.push(span("ttft", `first token ${((run.firstAt - run.startedAt) / 1000).toFixed(2)} s`));
    }
    if (run.stopReason) parts.push(span("stop-reason", `stop: ${run.stopReason}`));
    if (run.outcome === "aborted") parts.push(span("stopped", "stopped", "stopped"));
    view.meta.replaceChildren(...parts);
    scrollToEnd();
  }

  // ---- the stream ----------------------------------------------------------------------------------------

  function parseEvent(raw) {
    let event = "message";
    const data = [];
    for (const line of raw.split("\n")) {
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) return null;
    return { event, data: JSON.parse(data.join("\n")) };
  }

  // Stream one answer into `view`; returns the run: its content blocks, usage, stop reason and outcome
  // ("done", "aborted" or "error").
  async function streamAnswer(body, view, signal) {
    const run = {
      content: [], entries: [], usage: { input_tokens: null, output_tokens: null, cache_read_input_tokens: 0,
        cache_creation_input_tokens: 0 }, stopReason: null,
      outcome: null, error: null, deltas: 0, startedAt: performance.now(), firstAt: null, endedAt: null,
    };
    const fail = (message) => {
      run.outcome = "error";
      run.error = message;
      view.error(message);
      showError(message);
    };

    const handle = ({ event, data }) => {
      const type = data.type || event;
      if (type === "ping") return;
      if (type === "message_start") {
        const usage = data.message && data.message.usage;
        if (usage) Object.assign(run.usage, usage, { output_tokens: null });
      } else if (type === "content_block_start") {
        const block = { ...data.content_block };
        const entry = { block, node: view.block(block), json: "", complete: false };
        if (block.type === "tool_use") block.input = {};
        if (block.type === "text" && block.text) entry.node.textContent = block.text;
        run.entries[data.index] = entry;
      } else if (type === "content_block_delta") {
        const entry = run.entries[data.index];
        const delta = data.delta;
        if (!entry) return;
        if (run.firstAt === null) run.firstAt = performance.now();
        run.deltas += 1;
        if (delta.type === "text_delta") {
          entry.block.text = (entry.block.text || "") + delta.text;
          entry.node.append(delta.text);
        } else if (delta.type === "thinking_delta") {
          entry.block.thinking = (entry.block.thinking || "") + delta.thinking;
          entry.node.querySelector(".thinking-text").append(delta.thinking);
        } else if (delta.type === "signature_delta") {
          entry.block.signature = delta.signature;
        } else if (delta.type === "input_json_delta") {
          entry.json += delta.partial_json;
          entry.node.querySelector(".tool-input").textContent = entry.json;
        }
        scrollToEnd();
      } else if (type === "content_block_stop") {
        const entry = run.entries[data.index];
        if (!entry) return;
        entry.complete = true;
        if (entry.block.type === "tool_use") {
          try {
            entry.block.input = entry.json.trim() ? JSON.parse(entry.json) : {};
          } catch (_) {
            entry.block.input = {};
            view.error(`tool_use ${entry.block.name}: the input is not valid JSON`);
          }
          entry.node.querySelector(".tool-input").textContent = JSON.stringify(entry.block.input, null, 2);
        } else if (entry.block.type === "thinking") {
          entry.node.open = false;
        }
      } else if (type === "message_delta") {
        if (data.delta && "stop_reason" in data.delta) run.stopReason = data.delta.stop_reason;
        if (data.usage) {
          for (const [name, value] of Object.entries(data.usage)) if (value != null) run.usage[name] = value;
        }
        renderMeta(view, run);
      } else if (type === "message_stop") {
        run.outcome = "done";
      } else if (type === "error") {
        fail(describeError(data));
      }
    };

    let response;
    try {
      response = await fetch("/v1/messages", {
        method: "POST", headers: apiHeaders(), body: JSON.stringify({ ...body, stream: true }), signal,
      });
    } catch (err) {
      if (err.name === "AbortError") run.outcome = "aborted";
      else fail(`Request failed: ${err.message}`);
      return finish(run, view);
    }
    if (!response.ok) {
      fail(await responseError(response));
      return finish(run, view);
    }

    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      while (run.outcome === null) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
        let cut;
        while (run.outcome === null && (cut = buffer.indexOf("\n\n")) >= 0) {
          const raw = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const parsed = parseEvent(raw);
          if (parsed) handle(parsed);
        }
      }
      if (run.outcome === null) fail("The stream ended before message_stop.");
    } catch (err) {
      if (err.name === "AbortError") run.outcome = "aborted";
      else fail(`Stream failed: ${err.message}`);
    } finally {
      reader.cancel().catch(() => {});
    }
    return finish(run, view);
  }

  function finish(run, view) {
    run.endedAt = performance.now();
    // What goes back into the history: every complete block (an aborted answer keeps its text so far, but not
    // a half-written tool call or an unsigned thinking block).
    run.content = run.entries.filter(Boolean).filter((entry) => {
      const b = entry.block;
      if (b.type === "text") return Boolean(b.text);
      if (b.type === "thinking") return entry.complete && Boolean(b.signature);
      if (run.outcome !== "done") return false;
      return true;
    }).map((entry) => entry.block);
    renderMeta(view, run);
    view.done();
    return run;
  }

  // ---- the turn --------------------------------------------------------------------------------------------

  function updateToolHint() {
    const hint = $("tool-result-hint");
    const uses = state.pendingToolUses;
    if (uses.length) {
      hint.textContent = `The model called ${uses.map((t) => t.name).join(", ")}: your next message is sent as `
        + `the tool_result (type the tool's output).`;
      hint.hidden = false;
      $("prompt").placeholder = "Tool result, e.g. {\"temperature\": 18, \"unit\": \"celsius\"}";
    } else {
      hint.hidden = true;
      $("prompt").placeholder = "Message (Enter to send, Shift+Enter for a new line)";
    }
  }

  async function send(event) {
    if (event) event.preventDefault();
    if (state.controller) return;
    const text = $("prompt").value;
    if (!text.trim()) return;
    let settings;
    try {
      settings = requestSettings();
    } catch (err) {
      checkTools();
      showError(err.message);
      return;
    }
    clearError();

    const toolUses = state.pendingToolUses;
    const userMessage = toolUses.length
      ? { role: "user", content: toolUses.map((t) => ({ type: "tool_result", tool_use_id: t.id, content: text })) }
      : { role: "user", content: text };
    const body = { ...settings, messages: [...state.history, userMessage] };

    const userNode = renderUser(userMessage, toolUses);
    $("prompt").value = "";
    const view = renderAssistant(settings.model);
    const controller = new AbortController();
    state.controller = controller;
    setBusy(true);
    setStatus("Generating…", "streaming");

    let run;
    try {
      run = await streamAnswer(body, view, controller.signal);
    } finally {
      state.controller = null;
      setBusy(false);
    }

    if (run.outcome === "error" || (run.outcome === "aborted" && !run.content.length)) {
      // Nothing to keep: the turn leaves the history as it was, and the text goes back into the box.
      userNode.classList.add("dropped");
      userNode.title = "Not part of the conversation (no answer)";
      if (!$("prompt").value) $("prompt").value = text;
      setStatus(run.outcome === "error" ? "Error — see above" : "Stopped", "ready");
      return;
    }
    state.history = [...body.messages, { role: "assistant", content: run.content }];
    state.lastBody = body;
    state.pendingToolUses = run.outcome === "done" && run.stopReason === "tool_use"
      ? run.content.filter((b) => b.type === "tool_use") : [];
    updateToolHint();
    setStatus(run.outcome === "aborted" ? "Stopped" : "Ready", "ready");
    if (!$("export-panel").hidden) showExport();
  }

  function stop() {
    if (state.controller) state.controller.abort();
  }

  function newChat() {
    stop();
    state.history = [];
    state.pendingToolUses = [];
    state.lastBody = null;
    updateToolHint();
    $("messages").replaceChildren($("empty"));
    $("empty").hidden = false;
    $("export-panel").hidden = true;
    clearError();
    setStatus("Ready", "ready");
  }

  // ---- export ---------------------------------------------------------------------------------------------

  // The request body that reproduces the conversation: the last answer's request, or (before any answer) what
  // Send would post now.
  function exportBody() {
    if (state.lastBody) {
      const body = { ...state.lastBody };
      delete body.stream;
      return body;
    }
    const body = requestSettings();
    const text = $("prompt").value;
    body.messages = text.trim() ? [{ role: "user", content: text }] : [];
    return body;
  }

  function showExport() {
    try {
      $("export-json").value = JSON.stringify(exportBody(), null, 2);
      $("export-panel").hidden = false;
    } catch (err) {
      showError(err.message);
    }
  }

  function download() {
    const blob = new Blob([$("export-json").value + "\n"], { type: "application/json" });
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: "parley-request.json" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  // ---- wiring ---------------------------------------------------------------------------------------------

  function wire() {
    $("composer").addEventListener("submit", send);
    $("prompt").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $("composer").requestSubmit();
      }
    });
    $("stop").addEventListener("click", stop);
    $("new-chat").addEventListener("click", newChat);
    $("export").addEventListener("click", showExport);
    $("export-close").addEventListener("click", () => { $("export-panel").hidden = true; });
    $("download").addEventListener("click", download);
    $("error-close").addEventListener("click", clearError);
    $("api-key").addEventListener("input", onKeyInput);
    $("tools").addEventListener("input", checkTools);
    $("model").addEventListener("change", updateThinkingHint);
    $("thinking").addEventListener("change", () => {
      $("thinking-budget").disabled = !$("thinking").checked;
    });
  }

  async function init() {
    wire();
    $("api-key").value = localStorage.getItem(KEY_STORAGE) || "";
    setBusy(false);
    setStatus("Loading…", "loading");
    await loadHealth();
    await loadModels();
    setStatus("Ready", "ready");
    document.body.dataset.ready = "true";
  }

  init();
})();
