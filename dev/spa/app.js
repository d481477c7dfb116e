// The sample SPA: OAuth 2.0 authorization code with PKCE as a public client (RFC 7636), the
// access token kept in this tab's sessionStorage only, and tokenbridge's web API called with
// it. Which tokenbridge it calls: ?api=http://127.0.0.1:8080 (remembered for the tab).
"use strict";

const config = document.body.dataset;
const authority = `${location.origin}/${config.tenant}/oauth2/v2.0`;
const redirectUri = `${location.origin}${location.pathname}`;
const store = sessionStorage;
const $ = (id) => document.getElementById(id);

function base64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function random() {
  return base64url(crypto.getRandomValues(new Uint8Array(32)));
}

function api() {
  const asked = new URLSearchParams(location.search).get("api");
  if (asked) store.setItem("api", asked.replace(/\/+$/, ""));
  return store.getItem("api") || "http://127.0.0.1:8080";
}

async function signIn() {
  const verifier = random();
  const state = random();
  store.setItem("pkce", JSON.stringify({ verifier, state }));
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const query = new URLSearchParams({
    client_id: config.clientId,
    response_type: "code",
    redirect_uri: redirectUri,
    scope: `openid profile ${config.scope}`,
    state,
    nonce: random(),
    code_challenge: challenge,
    code_challenge_method: "S256",
  });
  location.assign(`${authority}/authorize?${query}`);
}

// Back from the provider: the code is redeemed with the verifier (no secret: a public client).
async function redeem(params) {
  const pending = JSON.parse(store.getItem("pkce") || "null");
  store.removeItem("pkce");
  history.replaceState(null, "", redirectUri);
  if (params.get("error")) throw new Error(`${params.get("error")}: ${params.get("error_description") || ""}`);
  if (!pending || params.get("state") !== pending.state) throw new Error("the sign-in answer does not match this tab's request");
  const answer = await fetch(`${authority}/token`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      client_id: config.clientId,
      code: params.get("code"),
      redirect_uri: redirectUri,
      code_verifier: pending.verifier,
    }),
  });
  const tokens = await answer.json();
  if (!answer.ok) throw new Error(`${tokens.error}: ${tokens.error_description}`);
  store.setItem("access_token", tokens.access_token);
}

async function callApi() {
  const token = store.getItem("access_token");
  const answer = await fetch(`${api()}/api/me`, { headers: { Authorization: `Bearer ${token}` } });
  const body = await answer.text();
  const result = $("result");
  if (answer.ok) {
    result.className = "";
    result.textContent = JSON.stringify(JSON.parse(body), null, 2);
  } else {
    result.className = "error";
    const challenge = answer.headers.get("WWW-Authenticate");
    result.textContent = `HTTP ${answer.status}${challenge ? `\nWWW-Authenticate: ${challenge}` : ""}\n${body}`;
  }
}

function show() {
  const signedIn = store.getItem("access_token") !== null;
  $("status").textContent = signedIn ? "Signed in" : "Not signed in";
  $("call").disabled = !signedIn;
  $("signout").disabled = !signedIn;
  $("api").textContent = `${api()}/api/me`;
}

function failed(error) {
  $("result").className = "error";
  $("result").textContent = String(error.message || error);
}

$("signin").addEventListener("click", () => signIn().catch(failed));
$("call").addEventListener("click", () => callApi().catch(failed));
$("signout").addEventListener("click", () => {
  store.removeItem("access_token");
  $("result").textContent = "";
  show();
});

(async () => {
  const params = new URLSearchParams(location.search);
  if (params.has("code") || params.has("error")) {
    await redeem(params);
    show();
    await callApi();
  }
  show();
})().catch((error) => {
  show();
  failed(error);
});
