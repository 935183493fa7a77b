// The Webhooks tab of dataops-webhooks: plain JavaScript over the management API.
// Data is only ever written with textContent, never parsed as HTML.
"use strict";

const config = JSON.parse(document.getElementById("dw-config").textContent || "null") || {};
const $ = (id) => document.getElementById(id);
const state = { access: null, project: "", hooks: [], next: null, editing: null, log: null };

/** Calls the API; resolves to the JSON body, or throws the problem document. */
async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" } };
  if (method !== "GET") {
    init.headers["Content-Type"] = "application/json";
    init.body = body === undefined ? "" : JSON.stringify(body);
  }
  const response = await fetch("api/" + path, init);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const problem = data || { detail: response.statusText, status: response.status };
    problem.status = response.status;
    throw problem;
  }
  return data;
}

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) {
    node.append(child);
  }
  return node;
}

function notice(text, kind) {
  const box = $("notice");
  box.textContent = text;
  box.className = "dw-notice " + (kind === "error" ? "dw-error" : "dw-ok");
  box.hidden = false;
}

function show(id, visible) {
  $(id).hidden = !visible;
}

// ---- project and access -------------------------------------------------

async function start() {
  try {
    state.access = await api("GET", "access");
  } catch (problem) {
    notice(problem.detail, "error");
    return;
  }
  const projects = state.access.projects || [];
  for (const name of projects) {
    $("projects").append(el("option", { value: name }));
  }
  const fromUrl = new URLSearchParams(location.search).get("project");
  state.project = fromUrl || projects[0] || localStorage.getItem("dw-project") || "";
  $("project").value = state.project;
  $("project").addEventListener("change", () => {
    state.project = $("project").value.trim();
    localStorage.setItem("dw-project", state.project);
    closeLog();
    loadHooks();
  });
  loadSecret();
  loadHooks();
}

// ---- the organization secret ------------------------------------------------

async function loadSecret() {
  if (state.access.projects) {
    $("secret-status").textContent = "The organization's secret is managed by its administrators.";
    return;
  }
  try {
    const { exists } = await api("GET", "secret");
    $("secret-status").textContent = exists
      ? "Requests are signed with the organization's secret. It cannot be shown again; rotate it to get a new one."
      : "The organization has no signing secret yet.";
    show("secret-generate", !exists);
    show("secret-rotate", exists);
  } catch (problem) {
    $("secret-status").textContent = problem.detail;
  }
}

function showSecret(view) {
  $("secret-value").textContent = view.secret;
  $("secret-warning").textContent = view.warning;
  show("secret-once", true);
}

$("secret-generate").addEventListener("click", async () => {
  try {
    showSecret(await api("POST", "secret"));
    loadSecret();
  } catch (problem) {
    notice(problem.detail, "error");
  }
});

$("secret-rotate").addEventListener("click", async () => {
  if (!confirm("Rotate the secret? The current one stops signing at once: update your receivers.")) {
    return;
  }
  try {
    showSecret(await api("POST", "secret/rotate", {}));
  } catch (problem) {
    notice(problem.detail, "error");
  }
});

$("secret-copy").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText($("secret-value").textContent);
    $("secret-copy").textContent = "Copied";
  } catch (_) {
    const range = document.createRange();
    range.selectNodeContents($("secret-value"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
  }
});

$("secret-done").addEventListener("click", () => {
  $("secret-value").textContent = "";
  $("secret-copy").textContent = "Copy";
  show("secret-once", false);
});

// ---- the webhook list ------------------------------------------------------

async function loadHooks(more) {
  if (!state.project) {
    $("hooks").replaceChildren();
    show("hooks-empty", true);
    return;
  }
  const query = new URLSearchParams({ project: state.project });
  if (more && state.next) {
    query.set("cursor", state.next);
  }
  try {
    const page = await api("GET", "webhooks?" + query);
    state.hooks = more ? state.hooks.concat(page.items) : page.items;
    state.next = page.next;
    renderHooks();
  } catch (problem) {
    notice(problem.detail, "error");
  }
}

function renderHooks() {
  const rows = state.hooks.map((hook) => {
    const toggle = el("input", { type: "checkbox", checked: hook.active, className: "dw-toggle" });
    toggle.setAttribute("aria-label", "Active");
    toggle.addEventListener("change", () => setActive(hook, toggle));
    const result = el("span", { className: "dw-send-result" });
    const send = el("button", { type: "button", className: "dw-icon dw-send", title: "Send test payload", textContent: "➤" });
    send.setAttribute("aria-label", "Send test payload");
    send.addEventListener("click", () => sendTest(hook, send, result));
    const edit = el("button", { type: "button", className: "dw-quiet dw-edit", textContent: "Edit" });
    edit.addEventListener("click", () => openForm(hook));
    const log = el("button", { type: "button", className: "dw-quiet dw-log", textContent: "Deliveries" });
    log.addEventListener("click", () => openLog(hook));
    const remove = el("button", { type: "button", className: "dw-quiet dw-danger dw-delete", textContent: "Delete" });
    remove.addEventListener("click", () => deleteHook(hook));
    const status = el("span", { className: "dw-badge dw-" + hook.status, textContent: hook.status });
    if (hook.disabled_reason) {
      status.title = hook.disabled_reason;
    }
    const row = el(
      "tr",
      { className: "dw-hook" },
      el("td", { className: "dw-url", textContent: hook.url }),
      el("td", { textContent: hook.events.join(", ") === "*" ? "all events" : hook.events.join(", ") }),
      el("td", {}, toggle),
      el("td", {}, status),
      el("td", { className: "dw-actions" }, send, edit, log, remove, result),
    );
    row.dataset.id = hook.id;
    return row;
  });
  $("hooks").replaceChildren(...rows);
  show("hooks-empty", rows.length === 0);
  show("hooks-more", Boolean(state.next));
}

$("hooks-more").addEventListener("click", () => loadHooks(true));

async function setActive(hook, toggle) {
  try {
    const changed = await api("POST", `webhooks/${hook.id}/${toggle.checked ? "activate" : "deactivate"}`);
    Object.assign(hook, changed);
    renderHooks();
  } catch (problem) {
    toggle.checked = !toggle.checked;
    notice(problem.detail, "error");
  }
}

async function sendTest(hook, button, result) {
  button.disabled = true;
  result.className = "dw-send-result";
  result.textContent = "Sending…";
  try {
    const outcome = await api("POST", `webhooks/${hook.id}/test`);
    if (outcome.result === "delivered") {
      result.className = "dw-send-result dw-ok";
      result.textContent = `Delivered (${outcome.status})`;
    } else {
      result.className = "dw-send-result dw-error";
      result.textContent = outcome.error || "The test payload was not delivered";
    }
  } catch (problem) {
    result.className = "dw-send-result dw-error";
    result.textContent = problem.detail;
  } finally {
    button.disabled = false;
  }
}

async function deleteHook(hook) {
  if (!confirm(`Delete the webhook to ${hook.url}?`)) {
    return;
  }
  try {
    await api("DELETE", `webhooks/${hook.id}`);
    if (state.log && state.log.hook.id === hook.id) {
      closeLog();
    }
    loadHooks();
  } catch (problem) {
    notice(problem.detail, "error");
  }
}

// ---- the create / edit form ------------------------------------------------

function headerRow(name, value, kept) {
  const nameInput = el("input", { className: "dw-h-name", value: name || "", placeholder: "Header-Name" });
  const valueInput = el("input", { className: "dw-h-value", value: value || "", placeholder: kept ? "(unchanged)" : "value" });
  valueInput.dataset.kept = kept ? "1" : "";
  const remove = el("button", { type: "button", className: "dw-quiet", textContent: "Remove" });
  const row = el("div", { className: "dw-row dw-header-row" }, nameInput, valueInput, remove);
  remove.addEventListener("click", () => row.remove());
  return row;
}

function openForm(hook, events) {
  state.editing = hook || null;
  $("form-title").textContent = hook ? "Edit webhook" : "Add webhook";
  $("f-url").value = hook ? hook.url : "";
  $("f-description").value = hook && hook.description ? hook.description : "";
  $("f-active").checked = hook ? hook.active : true;
  const chosen = hook ? hook.events : events || [];
  const all = chosen.includes("*");
  $("f-events").replaceChildren(
    ...state.access.event_types.map((name) =>
      el("label", { className: "dw-check" }, el("input", { type: "checkbox", value: name, checked: all || chosen.includes(name) }), " " + name),
    ),
  );
  $("f-headers").replaceChildren(...(hook ? hook.header_names.map((name) => headerRow(name, "", true)) : []));
  for (const p of document.querySelectorAll(".dw-field-error")) {
    p.textContent = "";
  }
  show("form-error", false);
  $("form-dialog").showModal();
}

$("create-open").addEventListener("click", () => openForm(null));
$("f-add-header").addEventListener("click", () => $("f-headers").append(headerRow("", "", false)));
$("form-cancel").addEventListener("click", () => $("form-dialog").close());

$("hook-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const events = [...$("f-events").querySelectorAll("input:checked")].map((i) => i.value);
  const headers = {};
  for (const row of $("f-headers").querySelectorAll(".dw-header-row")) {
    const name = row.querySelector(".dw-h-name").value.trim();
    const input = row.querySelector(".dw-h-value");
    if (name) {
      headers[name] = input.value === "" && input.dataset.kept ? null : input.value;
    }
  }
  const body = {
    url: $("f-url").value.trim(),
    events,
    active: $("f-active").checked,
    description: $("f-description").value.trim() || null,
    headers,
  };
  for (const p of document.querySelectorAll(".dw-field-error")) {
    p.textContent = "";
  }
  show("form-error", false);
  try {
    if (state.editing) {
      await api("PATCH", `webhooks/${state.editing.id}`, body);
    } else {
      await api("POST", "webhooks", Object.assign({ project: state.project }, body));
    }
    $("form-dialog").close();
    loadHooks();
  } catch (problem) {
    let placed = false;
    for (const field of problem.errors || []) {
      const top = "/" + field.pointer.split("/")[1];
      const target = document.querySelector(`.dw-field-error[data-for="${top}"]`);
      if (target) {
        target.textContent = field.detail;
        placed = true;
      }
    }
    if (!placed) {
      $("form-error").textContent = problem.detail;
      show("form-error", true);
    }
  }
});

// ---- the delivery log ------------------------------------------------------

function openLog(hook) {
  state.log = { hook, next: null, items: [] };
  $("log-url").textContent = hook.url;
  show("log", true);
  show("attempts-box", false);
  loadDeliveries(false);
}

function closeLog() {
  state.log = null;
  show("log", false);
}

$("log-close").addEventListener("click", closeLog);
$("deliveries-more").addEventListener("click", () => loadDeliveries(true));

async function loadDeliveries(more) {
  const log = state.log;
  const query = new URLSearchParams({ limit: "20" });
  if (more && log.next) {
    query.set("cursor", log.next);
  }
  try {
    const page = await api("GET", `webhooks/${log.hook.id}/deliveries?${query}`);
    log.items = more ? log.items.concat(page.items) : page.items;
    log.next = page.next;
  } catch (problem) {
    notice(problem.detail, "error");
    return;
  }
  const rows = log.items.map((delivery) => {
    const attempts = el("button", { type: "button", className: "dw-quiet dw-attempts-open", textContent: "Attempts" });
    attempts.addEventListener("click", () => openAttempts(delivery));
    const again = el("button", { type: "button", className: "dw-quiet dw-redeliver", textContent: "Redeliver" });
    again.addEventListener("click", async () => {
      try {
        await api("POST", `deliveries/${delivery.id}/redeliver`);
        notice("Queued to be sent again.", "ok");
        setTimeout(() => loadDeliveries(false), 1000);
      } catch (problem) {
        notice(problem.detail, "error");
      }
    });
    const row = el(
      "tr",
      { className: "dw-delivery" },
      el("td", {}, el("code", { textContent: delivery.id.slice(0, 12) })),
      el("td", { textContent: delivery.event_type }),
      el("td", {}, el("span", { className: "dw-badge dw-" + delivery.status, textContent: delivery.status })),
      el("td", { textContent: String(delivery.attempts) }),
      el("td", { textContent: new Date(delivery.created_at).toLocaleString() }),
      el("td", { className: "dw-actions" }, attempts, again),
    );
    row.dataset.id = delivery.id;
    return row;
  });
  $("deliveries").replaceChildren(...rows);
  show("deliveries-empty", rows.length === 0);
  show("deliveries-more", Boolean(log.next));
}

async function openAttempts(delivery) {
  try {
    const { items } = await api("GET", `deliveries/${delivery.id}/attempts`);
    $("attempts-of").textContent = delivery.id;
    $("attempts").replaceChildren(
      ...items.map((a) =>
        el(
          "li",
          { className: a.error ? "dw-error" : "dw-ok" },
          `${new Date(a.attempted_at).toLocaleString()} — ${a.status || "no answer"} in ${a.duration_ms} ms` +
            (a.error ? `: ${a.error}` : "") +
            (a.response ? ` — ${a.response.slice(0, 200)}` : ""),
        ),
      ),
    );
    if (items.length === 0) {
      $("attempts").replaceChildren(el("li", { textContent: "Not attempted yet." }));
    }
    show("attempts-box", true);
  } catch (problem) {
    notice(problem.detail, "error");
  }
}

// ---- export to labeling ----------------------------------------------------

function exportError(text) {
  $("export-error").textContent = text || "";
  show("export-error", Boolean(text));
}

function issueFromDialog() {
  try {
    return JSON.parse($("export-issue").value);
  } catch (error) {
    exportError("The issue is not valid JSON: " + error.message);
    return null;
  }
}

async function exportPreview() {
  exportError("");
  show("export-prompt", false);
  show("export-preview-box", false);
  const query = new URLSearchParams({ project: state.project, event: "issue-exported" });
  let handlers;
  try {
    handlers = (await api("GET", "subscribers?" + query)).items;
  } catch (problem) {
    exportError(problem.detail);
    return;
  }
  if (handlers.length === 0) {
    $("export-prompt-text").textContent =
      `No webhook handles issue-exported in project ${state.project}. Create one to export issues to labeling.`;
    show("export-prompt", true);
    $("export-send").disabled = true;
    return;
  }
  $("export-send").disabled = false;
  const issue = issueFromDialog();
  if (!issue) {
    return;
  }
  try {
    const event = { event: "issue-exported", project: state.project, issue };
    const visible = handlers.find((h) => state.hooks.some((own) => own.id === h.id)) || handlers[0];
    const preview = await api("POST", `webhooks/${visible.id}/preview`, { event });
    $("export-preview-url").textContent = preview.url;
    $("export-preview").textContent = JSON.stringify(JSON.parse(preview.body), null, 2);
    show("export-preview-box", true);
  } catch (problem) {
    exportError(problem.detail);
  }
}

$("export-open").addEventListener("click", () => {
  if (!$("export-issue").value && config.sampleIssue) {
    $("export-issue").value = JSON.stringify(config.sampleIssue, null, 2);
    $("export-issue").scrollTop = 0;
  }
  $("export-dialog").showModal();
  exportPreview();
});
$("export-refresh").addEventListener("click", exportPreview);
$("export-cancel").addEventListener("click", () => $("export-dialog").close());
$("export-create").addEventListener("click", () => {
  $("export-dialog").close();
  openForm(null, ["issue-exported"]);
});

$("export-send").addEventListener("click", async () => {
  exportError("");
  const issue = issueFromDialog();
  if (!issue) {
    return;
  }
  $("export-send").disabled = true;
  try {
    const result = await api("POST", `projects/${encodeURIComponent(state.project)}/export`, { issue });
    const failed = result.outcomes.filter((o) => o.result !== "delivered");
    if (failed.length === 0) {
      $("export-dialog").close();
      notice(`Exported to labeling (${result.outcomes.length} endpoint${result.outcomes.length === 1 ? "" : "s"}).`, "ok");
    } else {
      exportError(failed.map((o) => `${o.url}: ${o.error || "not delivered yet; it will be retried"}`).join("\n"));
    }
  } catch (problem) {
    if (problem.type && problem.type.endsWith(":no-webhook")) {
      $("export-prompt-text").textContent = problem.detail;
      show("export-prompt", true);
    } else {
      exportError(problem.detail);
    }
  } finally {
    $("export-send").disabled = false;
  }
});

start();
