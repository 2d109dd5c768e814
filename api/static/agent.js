// nba agent panel: the call's talking points → outcomes and the survey score, back to the API.
// Plain script, no dependencies. Every request gives up after 2 s so the panel never holds up a call.
(() => {
  "use strict";

  const TIMEOUT_MS = 2000;
  const KEY_STORAGE = "nba-api-key";
  const ID_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
  const CALL_REASONS = {
    general: "General",
    payment: "Payment",
    balance_inquiry: "Balance inquiry",
    lost_card: "Lost card",
    travel_notice: "Travel notice",
    rewards_question: "Rewards question",
    dispute: "Dispute",
    fraud: "Fraud",
    complaint: "Complaint",
    bereavement: "Bereavement",
    hardship: "Hardship",
  };
  const OUTCOMES = {
    accepted: "Accepted",
    declined: "Declined",
    not_discussed: "Not discussed",
    already_aware: "Already aware",
  };
  const money = new Intl.NumberFormat("en-US", {
    style: "currency",
    currency: "USD",
    minimumFractionDigits: 0,
    maximumFractionDigits: 0,
  });

  const $ = (id) => document.getElementById(id);
  const ui = {
    keyPrompt: $("key-prompt"),
    keyReason: $("key-reason"),
    keyForm: $("key-form"),
    keyInput: $("key-input"),
    lookup: $("lookup"),
    lookupForm: $("lookup-form"),
    cardholderInput: $("cardholder-input"),
    reasonSelect: $("reason-select"),
    context: $("call-context"),
    state: $("state"),
    sharedReasons: $("shared-reasons"),
    cards: $("cards"),
    template: $("card-template"),
    nps: $("nps"),
    npsForm: $("nps-form"),
    npsInput: $("nps-input"),
    npsStatus: $("nps-status"),
  };

  const panel = {
    key: readStoredKey(),
    agentId: null,
    call: null, // {cardholderId, callReason, callId}
    closed: false,
    cards: [],
    loadSeq: 0,
    loadAbort: null,
    waitingForKey: null, // what to do once a key arrives
  };

  // ---- the API key: from the embedding page (postMessage) or typed once, kept for this tab ----

  function readStoredKey() {
    try {
      return window.sessionStorage.getItem(KEY_STORAGE);
    } catch {
      return null; // storage can be disabled in an embedded frame; the key then lives in memory only
    }
  }

  function storeKey(key) {
    panel.key = key;
    try {
      if (key === null) window.sessionStorage.removeItem(KEY_STORAGE);
      else window.sessionStorage.setItem(KEY_STORAGE, key);
    } catch {
      // memory only, see readStoredKey
    }
  }

  function useKey(key) {
    storeKey(key);
    ui.keyPrompt.hidden = true;
    const next = panel.waitingForKey;
    panel.waitingForKey = null;
    if (next) next();
  }

  function askForKey(reason, then, moveFocus) {
    storeKey(null);
    panel.waitingForKey = then;
    ui.keyReason.textContent = reason;
    ui.keyPrompt.hidden = false;
    if (moveFocus) ui.keyInput.focus();
    if (window.parent !== window) {
      // The desktop may answer with {type: "nba-api-key", key}; the prompt stays as the fallback.
      window.parent.postMessage({ type: "nba-api-key-needed", reason }, "*");
    }
  }

  window.addEventListener("message", (event) => {
    if (window.parent === window || event.source !== window.parent) return;
    const data = event.data;
    if (!data || data.type !== "nba-api-key" || typeof data.key !== "string") return;
    const key = data.key.trim();
    if (key) useKey(key);
  });

  ui.keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = ui.keyInput.value.trim();
    ui.keyInput.value = "";
    if (key) useKey(key);
  });

  function keyProblem(result) {
    if (result.status === 403) {
      return `This key may not use the agent panel (${result.detail || "wrong role"}). Enter an agent key.`;
    }
    return panel.key
      ? `The service did not accept the key (${result.detail || "unauthorised"}). Enter it again.`
      : "Enter the API key for this panel. It is kept only for this browser tab.";
  }

  // ---- requests ----

  // → {ok: true, status, data} or {ok: false, kind: "http"|"timeout"|"network"|"aborted", status, detail, retryAfter}
  async function request(method, path, body, outerSignal) {
    const controller = new AbortController();
    let timedOut = false;
    const timer = window.setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, TIMEOUT_MS);
    const onOuterAbort = () => controller.abort();
    if (outerSignal) outerSignal.addEventListener("abort", onOuterAbort);
    // Without a key the request still goes out: a service in development mode needs none, and
    // otherwise its 401 brings up the prompt with the reason.
    const headers = { Accept: "application/json" };
    if (panel.key) headers["X-API-Key"] = panel.key;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    try {
      const response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: controller.signal,
        cache: "no-store",
      });
      let data = null;
      try {
        data = await response.json();
      } catch {
        data = null;
      }
      if (response.ok) return { ok: true, status: response.status, data };
      return {
        ok: false,
        kind: "http",
        status: response.status,
        code: data && typeof data.code === "string" ? data.code : "",
        detail: readDetail(data),
        retryAfter: response.headers.get("Retry-After"),
      };
    } catch {
      if (timedOut) return { ok: false, kind: "timeout" };
      if (controller.signal.aborted) return { ok: false, kind: "aborted" };
      return { ok: false, kind: "network" };
    } finally {
      window.clearTimeout(timer);
      if (outerSignal) outerSignal.removeEventListener("abort", onOuterAbort);
    }
  }

  function readDetail(data) {
    if (!data || data.detail === undefined || data.detail === null) return "";
    const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
    return detail.length > 300 ? `${detail.slice(0, 300)}…` : detail;
  }

  function isKeyProblem(result) {
    return result.kind === "http" && (result.status === 401 || result.status === 403);
  }

  // ---- the panel's state box ----

  function showState(kind, lines, retry) {
    ui.state.replaceChildren();
    ui.state.className = `state state-${kind}`;
    ui.state.setAttribute("aria-busy", kind === "loading" ? "true" : "false");
    for (const [text, cls] of lines) {
      if (!text) continue;
      const p = document.createElement("p");
      p.textContent = text;
      if (cls) p.className = cls;
      ui.state.append(p);
    }
    if (retry) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Try again";
      button.addEventListener("click", retry);
      ui.state.append(button);
    }
  }

  function clearState() {
    ui.state.replaceChildren();
    ui.state.className = "state";
    ui.state.setAttribute("aria-busy", "false");
  }

  function capitalise(text) {
    return text ? text.charAt(0).toUpperCase() + text.slice(1) : text;
  }

  function retryAfterWords(value) {
    const seconds = Number.parseInt(value || "", 10);
    return Number.isFinite(seconds) && seconds > 0
      ? `Try again in about ${seconds} second${seconds === 1 ? "" : "s"}.`
      : "Try again in a moment.";
  }

  // ---- loading a call's suggestions ----

  function describeCall(call, count) {
    ui.context.replaceChildren();
    const who = document.createElement("strong");
    who.textContent = call.cardholderId;
    const parts = [` · ${CALL_REASONS[call.callReason]} call`];
    if (count !== null) parts.push(` · ${count} talking point${count === 1 ? "" : "s"}`);
    ui.context.append("Cardholder ", who, parts.join(""));
    ui.context.hidden = false;
  }

  function rememberCallInAddress(call) {
    const params = new URLSearchParams(window.location.search);
    params.set("cardholder_id", call.cardholderId);
    params.set("call_reason", call.callReason);
    if (call.callId) params.set("call_id", call.callId);
    else params.delete("call_id");
    try {
      window.history.replaceState(null, "", `${window.location.pathname}?${params}`);
    } catch {
      // a reload then starts a new call; nothing else depends on it
    }
  }

  async function loadCall(call, fromUser) {
    if (panel.loadAbort) panel.loadAbort.abort();
    const seq = ++panel.loadSeq;
    panel.call = call;
    panel.closed = false;
    panel.cards = [];
    ui.cards.replaceChildren();
    showSharedReasons([]);
    ui.npsStatus.textContent = "";
    ui.npsStatus.className = "save-status";
    ui.nps.hidden = !call.callId;
    describeCall(call, null);
    showState("loading", [["Loading talking points…", null]]);
    const controller = new AbortController();
    panel.loadAbort = controller;
    const query = new URLSearchParams({ call_reason: call.callReason, limit: "3" });
    if (call.callId) query.set("call_id", call.callId);
    const path = `/v1/cardholders/${encodeURIComponent(call.cardholderId)}/suggestions?${query}`;
    const result = await request("GET", path, undefined, controller.signal);
    if (seq !== panel.loadSeq || result.kind === "aborted") return;
    panel.loadAbort = null;
    if (result.ok) {
      showSuggestions(result.data);
      return;
    }
    const retry = () => loadCall(call, true);
    if (isKeyProblem(result)) {
      showState("warn", [["Waiting for an API key to fetch talking points.", null]]);
      askForKey(keyProblem(result), retry, fromUser);
      return;
    }
    if (result.kind === "timeout") {
      showState(
        "warn",
        [
          ["No answer from the talking-points service within 2 seconds, so nothing is shown.", null],
          ["Carry on with the call.", "detail"],
        ],
        retry,
      );
    } else if (result.kind === "network") {
      showState(
        "error",
        [
          ["The talking-points service can't be reached right now.", null],
          ["Carry on with the call.", "detail"],
        ],
        retry,
      );
    } else if (result.status === 409) {
      showState("error", [
        ["This call id was used for another cardholder. Look the cardholder up again to start a new call.", null],
        [result.detail, "detail"],
      ]);
    } else if (result.code === "unknown_call" || result.code === "unknown_suggestion") {
      showState("error", [
        ["This call is not known to nba. Look the cardholder up again to start a new one.", null],
        [result.detail, "detail"],
      ]);
      ui.lookup.open = true;
    } else if (result.status === 404) {
      showState("error", [
        [`No cardholder with the id ${call.cardholderId} is known to nba. Check the id.`, null],
        ["If it is right, nba has no card data for them yet; carry on with the call.", "detail"],
      ]);
    } else if (result.status === 503) {
      showState(
        "error",
        [
          ["Talking points are unavailable right now.", null],
          [`Carry on with the call. ${retryAfterWords(result.retryAfter)}`, "detail"],
          [result.detail, "detail"],
        ],
        retry,
      );
    } else if (result.status === 422) {
      showState("error", [
        ["nba could not read this request.", null],
        [result.detail, "detail"],
      ]);
    } else {
      showState(
        "error",
        [
          [`Something went wrong (HTTP ${result.status}); carry on with the call.`, null],
          [result.detail, "detail"],
        ],
        retry,
      );
    }
  }

  function showSuggestions(data) {
    const current = { cardholderId: data.cardholder_id, callReason: data.call_reason, callId: data.call_id };
    panel.call = current;
    panel.closed = Boolean(data.call_closed);
    rememberCallInAddress(current);
    describeCall(current, data.suggestions.length);
    ui.nps.hidden = false;

    const note = data.note ? capitalise(data.note) : "";
    if (data.suggestions.length === 0) {
      showState("empty", [
        ["Nothing to bring up on this call.", null],
        [note ? `${note}.` : "", "detail"],
      ]);
    } else if (panel.closed) {
      showState("empty", [["This call has ended: the outcomes are shown but can no longer be changed.", null]]);
    } else if (note) {
      showState("empty", [[`${note}.`, "detail"]]);
    } else {
      clearState();
    }
    showSharedReasons(data.suggestions.length ? data.shared_reasons || [] : []);
    panel.cards = data.suggestions.map((suggestion) => buildCard(suggestion));
    ui.cards.replaceChildren(...panel.cards.map((card) => card.item));
  }

  // What is true of the cardholder whatever the benefit, or what every card would say: once, above the
  // cards; each card's reasons are about its benefit.
  function showSharedReasons(reasons) {
    const list = ui.sharedReasons.querySelector(".reasons");
    list.replaceChildren(
      ...reasons.map((reason) => {
        const item = document.createElement("span");
        item.setAttribute("role", "listitem");
        item.textContent = reason;
        return item;
      }),
    );
    ui.sharedReasons.hidden = reasons.length === 0;
  }

  // ---- one card per suggestion ----

  // The estimate for this cardholder, rounded once by the engine: the talking point says the same number.
  function formatValue(valueUsd) {
    if (!(valueUsd > 0)) return "";
    if (valueUsd < 0.5) return "under $1 a year for them";
    return `about ${money.format(Math.round(valueUsd))} a year for them`;
  }

  function buildCard(suggestion) {
    const item = ui.template.content.firstElementChild.cloneNode(true);
    const card = {
      item,
      id: suggestion.suggestion_id,
      name: suggestion.benefit_name,
      confirmed: suggestion.outcome || null,
      wanted: suggestion.outcome || null,
      sending: false,
      buttons: Array.from(item.querySelectorAll("button.outcome")),
      status: item.querySelector(".save-status"),
    };
    item.dataset.suggestionId = suggestion.suggestion_id;
    item.dataset.benefitId = suggestion.benefit_id;
    item.querySelector(".benefit-name").textContent = suggestion.benefit_name;
    const value = item.querySelector(".value");
    value.textContent = formatValue(suggestion.value_usd);
    value.hidden = !value.textContent;
    item.querySelector(".talking-point").textContent = suggestion.talking_point;
    const reasons = item.querySelector(".reasons");
    for (const reason of suggestion.reasons || []) {
      const li = document.createElement("li");
      li.textContent = reason;
      reasons.append(li);
    }
    item.querySelector(".reasons-block").hidden = reasons.childElementCount === 0;
    item.querySelector(".outcomes").setAttribute("aria-label", `Outcome for ${suggestion.benefit_name}`);
    for (const button of card.buttons) {
      button.addEventListener("click", () => chooseOutcome(card, button.dataset.outcome));
    }
    showPressed(card, card.confirmed);
    if (card.confirmed) setStatus(card, "saved", `Saved: ${OUTCOMES[card.confirmed]}.`);
    if (panel.closed) closeCard(card);
    return card;
  }

  function showPressed(card, outcome) {
    for (const button of card.buttons) {
      button.setAttribute("aria-pressed", String(button.dataset.outcome === outcome));
    }
  }

  function setStatus(card, kind, text) {
    card.status.className = `save-status ${kind}`;
    card.status.textContent = text;
  }

  function closeCard(card) {
    card.item.classList.add("closed");
    for (const button of card.buttons) button.disabled = true;
  }

  function closeCall() {
    panel.closed = true;
    for (const card of panel.cards) closeCard(card);
  }

  function chooseOutcome(card, outcome) {
    if (panel.closed || !panel.cards.includes(card)) return;
    if (outcome === card.wanted && (card.sending || outcome === card.confirmed)) return;
    card.wanted = outcome;
    showPressed(card, outcome);
    setStatus(card, "saving", `Saving: ${OUTCOMES[outcome]}…`);
    // One request per card at a time, so the last click is the one the server keeps.
    if (!card.sending) sendOutcome(card);
  }

  async function sendOutcome(card) {
    const outcome = card.wanted;
    card.sending = true;
    const body = { outcome };
    if (panel.agentId) body.agent_id = panel.agentId;
    const result = await request("POST", `/v1/suggestions/${encodeURIComponent(card.id)}/outcome`, body);
    card.sending = false;
    if (!panel.cards.includes(card)) return; // another call was loaded meanwhile
    if (result.ok) {
      card.confirmed = result.data.outcome;
      if (card.wanted !== card.confirmed) {
        sendOutcome(card);
        return;
      }
      setStatus(card, "saved", `Saved: ${OUTCOMES[card.confirmed]}.`);
      return;
    }
    card.wanted = card.confirmed;
    showPressed(card, card.confirmed);
    if (isKeyProblem(result)) {
      setStatus(card, "failed", "Not saved: the service needs an API key (see above).");
      askForKey(keyProblem(result), () => chooseOutcome(card, outcome), true);
    } else if (result.kind === "timeout") {
      setStatus(card, "failed", "Not saved: no answer within 2 seconds. Click again to retry.");
    } else if (result.kind === "network") {
      setStatus(card, "failed", "Not saved: the service can't be reached. Click again to retry.");
    } else if (result.status === 409) {
      closeCall();
      setStatus(card, "failed", "Not saved: this call has ended, so outcomes can no longer be changed.");
    } else if (result.status === 503) {
      setStatus(card, "failed", `Not saved: the service is unavailable. ${retryAfterWords(result.retryAfter)}`);
    } else {
      const why = result.detail || `HTTP ${result.status}`;
      setStatus(card, "failed", `Not saved: ${why}.`);
    }
  }

  // ---- the survey score ----

  ui.npsForm.addEventListener("submit", (event) => {
    event.preventDefault();
    saveNps();
  });

  function setNpsStatus(kind, text) {
    ui.npsStatus.className = `save-status ${kind}`;
    ui.npsStatus.textContent = text;
  }

  async function saveNps() {
    const call = panel.call;
    const score = Number(ui.npsInput.value);
    if (!call || !call.callId) {
      setNpsStatus("failed", "Look the cardholder up first: the score belongs to a call.");
      return;
    }
    if (ui.npsInput.value.trim() === "" || !Number.isInteger(score) || score < 0 || score > 10) {
      setNpsStatus("failed", "The score is a whole number from 0 to 10.");
      return;
    }
    setNpsStatus("saving", "Saving the score…");
    const result = await request("POST", `/v1/calls/${encodeURIComponent(call.callId)}/nps`, { score });
    if (panel.call !== call) return;
    if (result.ok) {
      // The score closes the call: outcomes can no longer be changed.
      closeCall();
      setNpsStatus("saved", `Saved: ${result.data.score} out of 10. The call is now closed.`);
    } else if (isKeyProblem(result)) {
      setNpsStatus("failed", "Not saved: the service needs an API key (see above).");
      askForKey(keyProblem(result), saveNps, true);
    } else if (result.kind === "timeout") {
      setNpsStatus("failed", "Not saved: no answer within 2 seconds. Try again.");
    } else if (result.kind === "network") {
      setNpsStatus("failed", "Not saved: the service can't be reached. Try again.");
    } else if (result.status === 409) {
      setNpsStatus("failed", `Not saved: this call already has a different score (${result.detail}).`);
    } else if (result.status === 503) {
      setNpsStatus("failed", `Not saved: the service is unavailable. ${retryAfterWords(result.retryAfter)}`);
    } else {
      setNpsStatus("failed", `Not saved: ${result.detail || `HTTP ${result.status}`}.`);
    }
  }

  // ---- looking a cardholder up by hand ----

  ui.lookupForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const cardholderId = ui.cardholderInput.value.trim();
    if (!ID_RE.test(cardholderId)) {
      showState("error", [
        ["A cardholder id is 1 to 64 letters, digits or _ . : - characters.", null],
      ]);
      return;
    }
    loadCall({ cardholderId, callReason: ui.reasonSelect.value, callId: null }, true);
  });

  // ---- start: from the address (an embedding desktop) or the form ----

  function start() {
    const params = new URLSearchParams(window.location.search);
    const agentId = params.get("agent_id");
    panel.agentId = agentId && ID_RE.test(agentId) ? agentId : null;
    const cardholderId = (params.get("cardholder_id") || "").trim();
    const callReason = params.get("call_reason") || "general";
    const callId = params.get("call_id");
    if (cardholderId) ui.cardholderInput.value = cardholderId;
    if (Object.hasOwn(CALL_REASONS, callReason)) ui.reasonSelect.value = callReason;

    if (!cardholderId) {
      ui.lookup.open = true;
      if (!panel.key && window.parent !== window) {
        window.parent.postMessage({ type: "nba-api-key-needed", reason: keyProblem({}) }, "*");
      }
      return;
    }
    if (!ID_RE.test(cardholderId) || !Object.hasOwn(CALL_REASONS, callReason)) {
      ui.lookup.open = true;
      showState("error", [
        ["The address names a cardholder or call reason nba can't use. Check them below.", null],
      ]);
      return;
    }
    ui.lookup.open = false;
    loadCall({ cardholderId, callReason, callId: callId && ID_RE.test(callId) ? callId : null }, false);
  }

  start();
})();
