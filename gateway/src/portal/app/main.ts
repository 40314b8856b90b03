/**
 * The signer portal (issue 15): one page, bundled with @inkan/sdk/device. Everything that proves
 * the signer happens here, in the browser: the device key never leaves IndexedDB, the PIN goes
 * only into JWEs to the SAM, the SAM's signature on every SadChallenge is checked against the key
 * pinned at activation before anything is shown, and the R.SAD is built here. The gateway relays.
 */
import { fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import {
  buildActivationRequest,
  buildPinChangeRequest,
  buildRSadFor,
  buildSuspensionRequest,
  createDeviceKey,
  describeAuthorization,
  SadChallengeRefused,
  signDeviceJws,
} from "@inkan/sdk/device";
import { SadChallengeSchema, SamSigningKeySchema, type SadChallenge, type SamSigningKey } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { CreateChallengeResponseSchema, type CreateChallengeResponse } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import { loadRegistration, saveRegistration, type Registration } from "./device-store.js";
import { currentLang, initialLang, setLang, t, type TextKey } from "./i18n.js";

const deviceAuthenticationTyp = "inkan-device-authentication+jwt";
const authorizationHistoryTyp = "inkan-authorization-history+jwt";

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const views = ["loading", "activate", "registered", "requests", "request", "manage"] as const;
type View = (typeof views)[number];

interface Session {
  token: string;
  signerId: string;
  deviceKeyId: string;
  credentials: { credentialId: string; status: string }[];
}

interface RequestView {
  id: string;
  state: string;
  version: number;
  sca: string;
  credentialId: string;
  expiresAt: string;
  refusal: string | null;
  signed: number;
  challenge: JsonValue;
  /** A CSC request (issue 16): the gateway path to send the browser back to after the decision. */
  returnTo: string | null;
}

class ApiError extends Error {
  constructor(readonly status: number, readonly error: string, message: string) {
    super(message);
  }
}

let registration: Registration | undefined;
let session: Session | undefined;
/** Bumped on every navigation, so a long poll of a page left behind stops. */
let navigation = 0;

async function api<T>(path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (session) headers.authorization = `Bearer ${session.token}`;
  const res = await fetch(path, { method: body === undefined ? "GET" : "POST", headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const text = await res.text();
  const json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
  if (!res.ok) throw new ApiError(res.status, String(json.error ?? res.status), String(json.error_description ?? ""));
  return json as T;
}

async function challenge(purpose: string, credentialId?: string): Promise<CreateChallengeResponse> {
  const signerId = registration?.signerId ?? "";
  const json = await api<JsonValue>("/api/portal/challenge", { signerId, purpose, ...(credentialId ? { credentialId } : {}) });
  return fromJson(CreateChallengeResponseSchema, json);
}

function show(view: View): void {
  for (const v of views) $(`view-${v}`).hidden = v !== view;
  $("tabs").hidden = !session;
  $("tab-requests").toggleAttribute("aria-current", view === "requests" || view === "request");
  if (view === "requests" || view === "request") $("tab-requests").setAttribute("aria-current", "page");
  $("tab-manage").toggleAttribute("aria-current", view === "manage");
  if (view === "manage") $("tab-manage").setAttribute("aria-current", "page");
  document.body.dataset.view = view;
  $("view-" + view).querySelector("h1")?.focus?.();
}

function status(message: string): void {
  $("status").textContent = message;
}

function alertError(message: string | undefined): void {
  const el = $("alert");
  el.hidden = !message;
  el.textContent = message ?? "";
}

function errorText(err: unknown): string {
  if (err instanceof ApiError) return t("error", { e: `${err.error}${err.message ? `: ${err.message}` : ""}` });
  return t("error", { e: err instanceof Error ? err.message : String(err) });
}

function pinnedKey(): SamSigningKey {
  return fromJson(SamSigningKeySchema, registration!.challengeSigningKey as JsonValue);
}

function formatTime(iso: string): string {
  return new Date(iso).toLocaleString(currentLang() === "ja" ? "ja-JP" : "en-GB");
}

// ---- Activate -------------------------------------------------------------------------------

async function activate(event: SubmitEvent): Promise<void> {
  event.preventDefault();
  alertError(undefined);
  const signerId = $<HTMLInputElement>("activate-signer").value.trim();
  const code = $<HTMLInputElement>("activate-code").value.trim();
  const pin = $<HTMLInputElement>("activate-pin").value;
  if (!signerId || !code || !pin) return alertError(t("fillAll"));
  if (pin !== $<HTMLInputElement>("activate-pin2").value) return alertError(t("pinsDiffer"));
  status(t("working"));
  try {
    registration = { signerId, deviceKey: undefined as never, challengeSigningKey: undefined, samId: "", registeredAt: "" };
    const ch = await challenge("activation");
    // The device key: generated here, private half not extractable, kept in IndexedDB only.
    const deviceKey = await createDeviceKey("ES256");
    const { request } = await buildActivationRequest({ signerId, activationCode: code, pin, deviceKey, challenge: ch.challenge, samKey: ch.encryptionKey!, audience: ch.audience });
    const out = await api<{ deviceKeyId: string; activatedAt?: string }>("/api/portal/activate", request);
    registration = {
      signerId,
      deviceKey,
      // Pinned now, from the SAM's own response at activation (signer.proto CreateChallengeResponse).
      challengeSigningKey: toJson(SamSigningKeySchema, ch.challengeSigningKey!),
      samId: ch.audience,
      registeredAt: out.activatedAt ?? new Date().toISOString(),
    };
    await saveRegistration(registration);
    (["activate-code", "activate-pin", "activate-pin2"] as const).forEach((id) => ($<HTMLInputElement>(id).value = ""));
    status(t("activated"));
    await signIn();
    showRegistered(out.deviceKeyId);
  } catch (err) {
    registration = undefined;
    status("");
    alertError(errorText(err));
  }
}

function showRegistered(deviceKeyId: string): void {
  $("registered-signer").textContent = registration!.signerId;
  $("registered-kid").textContent = deviceKeyId;
  $("registered-sam").textContent = registration!.samId;
  $("registered-at").textContent = formatTime(registration!.registeredAt);
  show("registered");
}

// ---- Sign in (AuthenticateDevice) -----------------------------------------------------------

async function signIn(): Promise<void> {
  session = undefined;
  const ch = await challenge("device-authentication");
  const deviceProof = await signDeviceJws({ deviceKey: registration!.deviceKey, typ: deviceAuthenticationTyp, signerId: registration!.signerId, audience: ch.audience, challenge: ch.challenge });
  session = await api<Session>("/api/portal/session", { signerId: registration!.signerId, deviceProof });
}

// ---- Requests -------------------------------------------------------------------------------

async function showRequests(): Promise<void> {
  show("requests");
  const { requests } = await api<{ requests: RequestView[] }>("/api/portal/requests");
  const list = $("requests-list");
  list.replaceChildren();
  for (const r of requests) {
    const c = fromJson(SadChallengeSchema, r.challenge);
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = `#request=${r.id}`;
    a.textContent = `${c.description || c.transactionId} (${c.numSignatures}) — ${formatTime(r.expiresAt)}`;
    li.append(a);
    list.append(li);
  }
  $("requests-empty").hidden = requests.length > 0;
}

async function showRequest(id: string): Promise<void> {
  const nav = navigation;
  show("request");
  $("request-body").hidden = true;
  $("request-missing").hidden = true;
  $("request-outcome").textContent = "";
  $("request-progress-box").hidden = true;
  let r: RequestView;
  try {
    r = await api<RequestView>(`/api/portal/requests/${encodeURIComponent(id)}`);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      $("request-missing").hidden = false;
      return;
    }
    throw err;
  }
  const c = fromJson(SadChallengeSchema, r.challenge);
  // T-2.2.1.7: nothing is shown, nor signed, unless the SAM signed exactly these values.
  let fingerprint: string;
  try {
    fingerprint = (await describeAuthorization(c, { challengeSigningKey: pinnedKey() })).digestFingerprint;
  } catch (err) {
    if (err instanceof SadChallengeRefused) {
      alertError(t("notFromSam"));
      return;
    }
    throw err;
  }
  $("request-description").textContent = c.description;
  $("request-count").textContent = String(c.numSignatures);
  $("request-credential").textContent = c.credentialId;
  $("request-sca").textContent = r.sca;
  $("request-expires").textContent = formatTime(r.expiresAt);
  $("request-fingerprint").textContent = fingerprint;
  $("request-body").hidden = false;
  render(r, c);
  const form = $<HTMLFormElement>("approve-form");
  form.onsubmit = (event) => {
    event.preventDefault();
    void approve(r, c, nav);
  };
  $("decline").onclick = () => void decline(r, nav);
  // A CSC request approved on a page that was then reloaded before it went back: go back now.
  if (r.state === "submitted" && returnTo(r, nav)) return;
  if (r.state === "submitted" || r.state === "authorized") void follow(r, c, nav);
}

/** Shows the request's state; the approve form only while the signer can still answer. */
function render(r: RequestView, c: SadChallenge): void {
  const open = r.state === "pending";
  $("approve-form").hidden = !open;
  const outcome = $("request-outcome");
  $("request-progress-box").hidden = r.state !== "authorized";
  if (r.state === "authorized") {
    const p = $<HTMLProgressElement>("request-progress");
    p.max = c.numSignatures;
    p.value = r.signed;
    $("request-progress-text").textContent = t("signedOf", { k: r.signed, n: c.numSignatures });
    outcome.textContent = r.signed >= c.numSignatures ? t("allSigned") : t("authorized");
  } else if (r.state === "pending" && r.refusal) {
    outcome.textContent = r.refusal === "REASON_CREDENTIAL_LOCKED" ? t("locked") : t("wrongPin");
  } else if (r.state === "failed") {
    outcome.textContent = r.refusal === "REASON_CREDENTIAL_LOCKED" ? t("locked") : r.refusal === "REASON_AUTHENTICATION_FAILED" ? t("attemptsSpent") : t("failed", { r: r.refusal ?? "" });
  } else if (r.state === "submitted") {
    outcome.textContent = t("waitingSca");
  } else if (r.state === "declined" || r.state === "cancelled" || r.state === "expired") {
    outcome.textContent = t(r.state as TextKey);
  } else {
    outcome.textContent = "";
  }
  document.body.dataset.requestState = r.refusal && r.state === "pending" ? "refused" : r.state;
  document.body.dataset.signed = String(r.signed);
  document.body.dataset.version = String(r.version);
}

async function approve(r: RequestView, c: SadChallenge, nav: number): Promise<void> {
  alertError(undefined);
  const pinInput = $<HTMLInputElement>("approve-pin");
  const pin = pinInput.value;
  if (!pin) return alertError(t("fillAll"));
  pinInput.value = "";
  try {
    const rSad = await buildRSadFor(c, { deviceKey: registration!.deviceKey, pin, challengeSigningKey: pinnedKey() });
    await api(`/api/portal/requests/${encodeURIComponent(r.id)}/approve`, { rSad });
    if (returnTo(r, nav)) return;
    const now = await api<RequestView>(`/api/portal/requests/${encodeURIComponent(r.id)}`);
    render(now, c);
    await follow(now, c, nav);
  } catch (err) {
    alertError(errorText(err));
  }
}

/** Follows the request (long poll) until the signer must act again or it is over. */
async function follow(r: RequestView, c: SadChallenge, nav: number): Promise<void> {
  let now = r;
  while (nav === navigation) {
    const done = now.state === "declined" || now.state === "cancelled" || now.state === "failed" || now.state === "expired" ||
      (now.state === "pending" && now.version !== r.version) || (now.state === "authorized" && now.signed >= c.numSignatures);
    if (done) return;
    now = await api<RequestView>(`/api/portal/requests/${encodeURIComponent(r.id)}?after=${now.version}`);
    if (nav === navigation) render(now, c);
  }
}

/**
 * A CSC request (issue 16): once the signer decided, the browser goes back to the CSC API, which
 * sends it on to the CSC client. Only to this gateway's own return path, never an open redirect:
 * a returnTo of another origin or path is ignored (the decision stands; the page just stays).
 */
function returnTo(r: RequestView, nav: number): boolean {
  if (!r.returnTo || nav !== navigation) return false;
  let to: URL;
  try {
    to = new URL(r.returnTo, location.origin);
  } catch {
    return false;
  }
  if (to.origin !== location.origin || to.pathname !== "/csc/v2/oauth2/return" || to.hash !== "" || !/^\?request=[A-Za-z0-9_-]{43}$/.test(to.search)) return false;
  status(t("returning", { sca: r.sca }));
  document.body.dataset.requestState = "returning";
  location.assign(to.href);
  return true;
}

async function decline(r: RequestView, nav: number): Promise<void> {
  alertError(undefined);
  try {
    await api(`/api/portal/requests/${encodeURIComponent(r.id)}/decline`, {});
    if (returnTo(r, nav)) return;
    if (nav !== navigation) return;
    render(await api<RequestView>(`/api/portal/requests/${encodeURIComponent(r.id)}`), fromJson(SadChallengeSchema, r.challenge));
  } catch (err) {
    alertError(errorText(err));
  }
}

// ---- Manage ---------------------------------------------------------------------------------

function showManage(): void {
  show("manage");
  const select = $<HTMLSelectElement>("suspend-credential");
  select.replaceChildren();
  for (const c of session?.credentials ?? []) {
    const o = document.createElement("option");
    o.value = c.credentialId;
    o.textContent = `${c.credentialId} (${c.status})`;
    select.append(o);
  }
}

async function changePin(event: SubmitEvent): Promise<void> {
  event.preventDefault();
  alertError(undefined);
  const oldPin = $<HTMLInputElement>("pin-old").value;
  const newPin = $<HTMLInputElement>("pin-new").value;
  if (!oldPin || !newPin) return alertError(t("fillAll"));
  try {
    const ch = await challenge("pin-change");
    const req = await buildPinChangeRequest({ signerId: registration!.signerId, oldPin, newPin, deviceKey: registration!.deviceKey, challenge: ch.challenge, samKey: ch.encryptionKey!, audience: ch.audience });
    await api("/api/portal/pin", req);
    $<HTMLInputElement>("pin-old").value = "";
    $<HTMLInputElement>("pin-new").value = "";
    status(t("pinChanged"));
  } catch (err) {
    alertError(errorText(err));
  }
}

async function suspend(event: SubmitEvent): Promise<void> {
  event.preventDefault();
  alertError(undefined);
  const credentialId = $<HTMLSelectElement>("suspend-credential").value;
  if (!credentialId) return alertError(t("noCredential"));
  if (!confirm(t("confirmSuspend", { c: credentialId }))) return;
  try {
    const ch = await challenge("suspension", credentialId);
    const req = await buildSuspensionRequest({ signerId: registration!.signerId, credentialId, deviceKey: registration!.deviceKey, challenge: ch.challenge, audience: ch.audience });
    const out = await api<{ credentialId: string; status: string }>("/api/portal/suspension", req);
    for (const c of session?.credentials ?? []) if (c.credentialId === out.credentialId) c.status = out.status;
    showManage();
    status(t("suspended", { c: out.credentialId }));
  } catch (err) {
    alertError(errorText(err));
  }
}

async function loadHistory(): Promise<void> {
  alertError(undefined);
  try {
    const ch = await challenge("authorization-history");
    const historyRequest = await signDeviceJws({ deviceKey: registration!.deviceKey, typ: authorizationHistoryTyp, signerId: registration!.signerId, audience: ch.audience, challenge: ch.challenge });
    const out = await api<{ authorizations?: { time: string; credentialId?: string; sca?: string; authorized?: boolean; refusalReason?: string }[] }>("/api/portal/history", { historyRequest, limit: 20 });
    const body = $("history-body");
    body.replaceChildren();
    for (const a of out.authorizations ?? []) {
      const tr = document.createElement("tr");
      for (const text of [formatTime(a.time), a.authorized ? t("ok") : t("refused", { r: a.refusalReason ?? "" }), a.credentialId ?? "", a.sca ?? ""]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      body.append(tr);
    }
    $("history-table").hidden = false;
    status((out.authorizations ?? []).length === 0 ? t("historyEmpty") : "");
  } catch (err) {
    alertError(errorText(err));
  }
}

// ---- Routing --------------------------------------------------------------------------------

async function route(): Promise<void> {
  navigation += 1;
  alertError(undefined);
  const hash = location.hash.slice(1);
  const requestId = /^request=([A-Za-z0-9_-]{1,64})$/.exec(hash)?.[1];
  if (!registration) {
    // A device of no signer: it can only register; it sees nothing of any request.
    $("activate-unregistered").hidden = !requestId;
    show("activate");
    return;
  }
  try {
    if (!session) await signIn();
  } catch (err) {
    show("activate");
    alertError(t("signInFailed", { e: err instanceof ApiError ? err.error : String(err) }));
    return;
  }
  try {
    if (requestId) await showRequest(requestId);
    else if (hash === "manage") showManage();
    else await showRequests();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      session = undefined;
      return route();
    }
    alertError(errorText(err));
  }
}

async function start(): Promise<void> {
  setLang(initialLang());
  $("lang-ja").onclick = () => setLang("ja");
  $("lang-en").onclick = () => setLang("en");
  $<HTMLFormElement>("activate-form").onsubmit = (e) => void activate(e);
  $<HTMLFormElement>("pin-form").onsubmit = (e) => void changePin(e);
  $<HTMLFormElement>("suspend-form").onsubmit = (e) => void suspend(e);
  $("history-load").onclick = () => void loadHistory();
  $("requests-refresh").onclick = () => void route();
  window.addEventListener("hashchange", () => void route());
  registration = await loadRegistration();
  await route();
  document.body.dataset.ready = "true";
}

void start();
