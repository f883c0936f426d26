//! SMART App Launch for browser apps (issue 16): authorize → consent →
//! code → token with PKCE → subscribe → context change, and every way it
//! must fail. Real HTTP against a real hub; redirects are not followed so
//! that each `Location` can be read.

mod common;

use std::time::Duration;

use common::*;
use lockstep_hub::auth::smart::{BrowserApp, Consent};
use lockstep_hub::HubEvent;
use serde_json::Value;

/// RFC 7636 Appendix B's verifier and its S256 challenge.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const REDIRECT: &str = "http://127.0.0.1:9/callback";
const APP_ORIGIN: &str = "http://127.0.0.1:9";

struct Flow {
    hub: TestHub,
    http: reqwest::Client,
    client_id: String,
}

impl Flow {
    async fn start() -> Flow {
        let hub = TestHub::start_with_auth().await;
        let app = hub
            .hub
            .auth()
            .register_browser_app(
                "Web Viewer",
                "fhircast/*.*",
                vec![],
                BrowserApp {
                    redirect_uris: vec![REDIRECT.to_owned()],
                    launch_url: Some(format!("{APP_ORIGIN}/launch")),
                    preapproved: false,
                },
            )
            .unwrap();
        let http = lockstep_hub::tls::http_client()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Flow {
            hub,
            http,
            client_id: app.client_id,
        }
    }

    fn authorize_params(&self) -> Vec<(&'static str, String)> {
        vec![
            ("response_type", "code".into()),
            ("client_id", self.client_id.clone()),
            ("redirect_uri", REDIRECT.into()),
            ("scope", "openid fhircast/*.read fhircast/*.write".into()),
            ("state", "st-42".into()),
            ("aud", self.hub.hub_url()),
            ("code_challenge", CHALLENGE.into()),
            ("code_challenge_method", "S256".into()),
        ]
    }

    async fn authorize_with(&self, params: &[(&str, String)]) -> reqwest::Response {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
            .finish();
        self.http
            .get(self.hub.url(&format!("/oauth/authorize?{query}")))
            .send()
            .await
            .unwrap()
    }

    /// The consent page's one-time form token.
    async fn consent_page(&self) -> String {
        let res = self.authorize_with(&self.authorize_params()).await;
        assert_eq!(res.status(), 200);
        let html = res.text().await.unwrap();
        assert!(html.contains("Allow Web Viewer?"), "{html}");
        assert!(html.contains(APP_ORIGIN), "shows the app's origin");
        assert!(html.contains("fhircast/*.read"), "shows the scopes");
        let marker = "name=\"request\" value=\"";
        let start = html.find(marker).unwrap() + marker.len();
        html[start..start + html[start..].find('"').unwrap()].to_owned()
    }

    async fn decide(&self, token: &str, decision: &str) -> reqwest::Response {
        self.http
            .post(self.hub.url("/oauth/authorize"))
            .header("origin", format!("http://{}", self.hub.addr))
            .form(&[("request", token), ("decision", decision)])
            .send()
            .await
            .unwrap()
    }

    /// Authorize with consent approved; the code from the redirect.
    async fn code(&self) -> String {
        let token = self.consent_page().await;
        let res = self.decide(&token, "approve").await;
        if res.status() != 303 {
            panic!("{}", res.text().await.unwrap());
        }
        code_of(&res)
    }

    async fn exchange(&self, code: &str, verifier: Option<&str>) -> (u16, Value) {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", &self.client_id),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v));
        }
        self.hub.token_request(&form).await
    }

    async fn refresh(&self, token: &str) -> (u16, Value) {
        self.hub
            .token_request(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", token),
                ("client_id", &self.client_id),
            ])
            .await
    }
}

/// The redirect's query, as pairs.
fn location(res: &reqwest::Response) -> (String, Vec<(String, String)>) {
    assert_eq!(res.status(), 303, "expected a redirect");
    let loc = res.headers()["location"].to_str().unwrap().to_owned();
    let (base, query) = loc.split_once('?').unwrap();
    (
        base.to_owned(),
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect(),
    )
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn code_of(res: &reqwest::Response) -> String {
    let (base, pairs) = location(res);
    assert_eq!(base, REDIRECT);
    assert_eq!(param(&pairs, "state"), Some("st-42"), "state comes back");
    param(&pairs, "code").expect("a code").to_owned()
}

/// The whole flow: discovery advertises it; consent is asked once (and the
/// tray hears of it); the code and PKCE verifier get a token that
/// subscribes and receives a context change; the refresh token rotates.
#[tokio::test]
async fn browser_app_joins_through_smart_launch_with_pkce() {
    let flow = Flow::start().await;
    let smart = flow.hub.smart_configuration().await;
    assert!(smart["authorization_endpoint"]
        .as_str()
        .unwrap()
        .ends_with("/oauth/authorize"));
    assert_eq!(smart["code_challenge_methods_supported"][0], "S256");
    assert_eq!(smart["response_types_supported"][0], "code");
    let grants = smart["grant_types_supported"].to_string();
    assert!(grants.contains("authorization_code") && grants.contains("refresh_token"));
    assert!(smart["capabilities"].to_string().contains("client-public"));

    let mut events = flow.hub.hub.events();
    let code = flow.code().await;
    let requested = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(HubEvent::ConsentRequested { app }) = events.recv().await {
                return app;
            }
        }
    })
    .await
    .expect("the tray is told");
    assert_eq!(requested, "Web Viewer");

    let (status, token) = flow.exchange(&code, Some(VERIFIER)).await;
    assert_eq!(status, 200, "{token}");
    let topic = flow.hub.hub.session_topic().to_owned();
    assert_eq!(token["hub.topic"], topic);
    assert_eq!(token["topic"], topic, "OHIF's cast client reads `topic`");
    assert_eq!(token["hub.url"], flow.hub.hub_url());
    assert_eq!(token["scope"], "fhircast/*.read fhircast/*.write");
    let access = token["access_token"].as_str().unwrap();

    let res = flow
        .hub
        .subscribe_with_token(access, &topic, "Patient-open")
        .await;
    assert_eq!(res.status(), 202);
    let mut ws = Ws::connect(&endpoint_of(res).await).await;
    assert_eq!(ws.next_json().await["hub.mode"], "subscribe");
    let published = flow
        .hub
        .publish_with_token(access, &patient_open(&topic, "p-smart"))
        .await;
    assert!(published.status().is_success());
    let event = ws.next_event().await;
    assert_eq!(event["event"]["hub.event"], "Patient-open");
    assert!(event.to_string().contains("p-smart"));

    // The second authorize needs no page: consent is remembered.
    let res = flow.authorize_with(&flow.authorize_params()).await;
    let again = code_of(&res);
    assert_eq!(flow.exchange(&again, Some(VERIFIER)).await.0, 200);

    // Refresh rotates: the new one works, the old one is used up.
    let first = token["refresh_token"].as_str().unwrap();
    let (status, refreshed) = flow.refresh(first).await;
    assert_eq!(status, 200, "{refreshed}");
    assert_ne!(refreshed["refresh_token"], token["refresh_token"]);
    let (status, body) = flow.refresh(first).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn wrong_or_missing_verifier_is_refused_and_burns_the_code() {
    let flow = Flow::start().await;
    let code = flow.code().await;
    let wrong = "x".repeat(43);
    let (status, body) = flow.exchange(&code, Some(&wrong)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, _) = flow.exchange(&code, Some(VERIFIER)).await;
    assert_eq!(status, 400, "one try per code");

    let code = flow.authorize_code_again().await;
    let (status, body) = flow.exchange(&code, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("code_verifier"));
}

impl Flow {
    /// A code once consent is already given.
    async fn authorize_code_again(&self) -> String {
        code_of(&self.authorize_with(&self.authorize_params()).await)
    }
}

#[tokio::test]
async fn plain_or_missing_challenge_method_is_refused_at_the_redirect() {
    let flow = Flow::start().await;
    for method in [Some("plain"), None] {
        let mut params = flow.authorize_params();
        params.retain(|(k, _)| *k != "code_challenge_method");
        if let Some(m) = method {
            params.push(("code_challenge_method", m.into()));
        }
        let res = flow.authorize_with(&params).await;
        let (base, pairs) = location(&res);
        assert_eq!(base, REDIRECT);
        assert_eq!(param(&pairs, "error"), Some("invalid_request"));
        assert_eq!(param(&pairs, "state"), Some("st-42"));
    }
    let mut params = flow.authorize_params();
    params.retain(|(k, _)| *k != "code_challenge");
    let (_, pairs) = location(&flow.authorize_with(&params).await);
    assert_eq!(param(&pairs, "error"), Some("invalid_request"));
    assert_eq!(flow.hub.hub.auth().smart().sizes().1, 0, "nothing parked");
}

#[tokio::test]
async fn unregistered_redirect_uri_gets_a_page_not_a_redirect() {
    let flow = Flow::start().await;
    let mut params = flow.authorize_params();
    params.retain(|(k, _)| *k != "redirect_uri");
    params.push(("redirect_uri", "http://127.0.0.1:9/callback/evil".into()));
    let res = flow.authorize_with(&params).await;
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
    assert!(res.text().await.unwrap().contains("redirect_uri"));

    // An unknown client too.
    let mut params = flow.authorize_params();
    params.retain(|(k, _)| *k != "client_id");
    params.push(("client_id", "ghost".into()));
    assert_eq!(flow.authorize_with(&params).await.status(), 400);

    // And at the token endpoint: the code is bound to its redirect URI.
    let code = flow.code().await;
    let (status, body) = flow
        .hub
        .token_request(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/other"),
            ("client_id", &flow.client_id),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn wrong_aud_is_refused() {
    let flow = Flow::start().await;
    let mut params = flow.authorize_params();
    params.retain(|(k, _)| *k != "aud");
    params.push(("aud", "https://fhir.example/r4".into()));
    let (_, pairs) = location(&flow.authorize_with(&params).await);
    assert_eq!(param(&pairs, "error"), Some("invalid_request"));
    assert!(param(&pairs, "error_description").unwrap().contains("aud"));
}

#[tokio::test]
async fn a_code_works_once() {
    let flow = Flow::start().await;
    let code = flow.code().await;
    assert_eq!(flow.exchange(&code, Some(VERIFIER)).await.0, 200);
    let (status, body) = flow.exchange(&code, Some(VERIFIER)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn an_expired_code_is_refused() {
    let flow = Flow::start().await;
    flow.hub
        .hub
        .auth()
        .smart()
        .set_code_lifetime(Duration::ZERO);
    let code = flow.code().await;
    let (status, body) = flow.exchange(&code, Some(VERIFIER)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("expired"));
}

/// Deny is remembered (no page next time, access_denied at once) until
/// the dashboard withdraws the decision.
#[tokio::test]
async fn denied_consent_is_remembered_and_revocable() {
    let flow = Flow::start().await;
    let token = flow.consent_page().await;
    let (base, pairs) = location(&flow.decide(&token, "deny").await);
    assert_eq!(base, REDIRECT);
    assert_eq!(param(&pairs, "error"), Some("access_denied"));
    assert_eq!(param(&pairs, "state"), Some("st-42"));
    // The form token was one-time.
    assert_eq!(flow.decide(&token, "approve").await.status(), 400);
    let (_, pairs) = location(&flow.authorize_with(&flow.authorize_params()).await);
    assert_eq!(param(&pairs, "error"), Some("access_denied"));

    flow.hub
        .hub
        .auth()
        .smart()
        .revoke_consent(&flow.client_id)
        .unwrap();
    assert_eq!(
        flow.authorize_with(&flow.authorize_params()).await.status(),
        200,
        "asked again"
    );
}

/// The consent form cannot be answered by another site's script.
#[tokio::test]
async fn consent_form_refuses_a_foreign_origin() {
    let flow = Flow::start().await;
    let token = flow.consent_page().await;
    let res = flow
        .http
        .post(flow.hub.url("/oauth/authorize"))
        .header("origin", APP_ORIGIN)
        .form(&[("request", token.as_str()), ("decision", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "the guard: not a browser-app path");
    // An opaque origin (a sandboxed frame) from another site.
    let res = flow
        .http
        .post(flow.hub.url("/oauth/authorize"))
        .header("origin", "null")
        .header("sec-fetch-site", "cross-site")
        .form(&[("request", token.as_str()), ("decision", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(flow.hub.hub.auth().smart().consent(&flow.client_id), None);
    // The app's script cannot read the page to learn a form token.
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            flow.authorize_params()
                .iter()
                .map(|(k, v)| (*k, v.as_str())),
        )
        .finish();
    let res = flow
        .http
        .get(flow.hub.url(&format!("/oauth/authorize?{query}")))
        .header("sec-fetch-mode", "cors")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(!res.text().await.unwrap().contains("name=\"request\""));
    // The form token still works from the hub's own page (Chromium's
    // `Origin: null` after the cross-site navigation).
    let res = flow
        .http
        .post(flow.hub.url("/oauth/authorize"))
        .header("origin", "null")
        .header("sec-fetch-site", "same-origin")
        .form(&[("request", token.as_str()), ("decision", "approve")])
        .send()
        .await
        .unwrap();
    code_of(&res);
    assert_eq!(
        flow.hub.hub.auth().smart().consent(&flow.client_id),
        Some(Consent::Approved)
    );
}

#[tokio::test]
async fn revoking_the_app_or_its_consent_ends_refresh_tokens() {
    let flow = Flow::start().await;
    let code = flow.code().await;
    let (_, token) = flow.exchange(&code, Some(VERIFIER)).await;
    let refresh = token["refresh_token"].as_str().unwrap().to_owned();
    flow.hub
        .hub
        .auth()
        .smart()
        .revoke_consent(&flow.client_id)
        .unwrap();
    assert_eq!(flow.refresh(&refresh).await.0, 400);

    // Consent again, then revoke the app itself.
    let code = flow.code().await;
    let (_, token) = flow.exchange(&code, Some(VERIFIER)).await;
    let refresh = token["refresh_token"].as_str().unwrap().to_owned();
    flow.hub.hub.apps().revoke(&flow.client_id).unwrap();
    let (status, body) = flow.refresh(&refresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let access = token["access_token"].as_str().unwrap();
    let topic = flow.hub.hub.session_topic().to_owned();
    assert_eq!(
        flow.hub
            .subscribe_with_token(access, &topic, "Patient-open")
            .await
            .status(),
        401
    );
}

/// The app's origin gets CORS on the hub and token endpoint; any other
/// origin is refused; the app's origin gets none on the dashboard.
#[tokio::test]
async fn cors_follows_registered_redirect_uris() {
    let flow = Flow::start().await;
    let preflight = |origin: &'static str, path: &'static str| {
        flow.http
            .request(reqwest::Method::OPTIONS, flow.hub.url(path))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let ok = preflight(APP_ORIGIN, "/oauth/token").await.unwrap();
    assert_eq!(ok.status(), 204);
    assert_eq!(ok.headers()["access-control-allow-origin"], APP_ORIGIN);
    let ok = preflight(APP_ORIGIN, "/fhircast/STU3").await.unwrap();
    assert_eq!(ok.status(), 204);
    let pna = flow
        .http
        .request(reqwest::Method::OPTIONS, flow.hub.url("/fhircast/STU3"))
        .header("origin", APP_ORIGIN)
        .header("access-control-request-method", "POST")
        .header("access-control-request-private-network", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(
        pna.headers()["access-control-allow-private-network"],
        "true"
    );
    let foreign = preflight("http://evil.example", "/oauth/token")
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    assert!(foreign
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    let admin = preflight(APP_ORIGIN, "/admin/api/apps").await.unwrap();
    assert_eq!(admin.status(), 403);

    flow.hub.hub.apps().revoke(&flow.client_id).unwrap();
    let after = preflight(APP_ORIGIN, "/oauth/token").await.unwrap();
    assert_eq!(after.status(), 403, "a revoked app's origin is refused");
}

/// EHR launch: the tray's URL carries a launch id and `iss`; the app's
/// authorize with that launch succeeds; a made-up launch is refused.
#[tokio::test]
async fn ehr_launch_url_and_launch_parameter() {
    let flow = Flow::start().await;
    // The hub knows its address once it serves.
    flow.hub.smart_configuration().await;
    let url = flow.hub.hub.launch_url(&flow.client_id).unwrap();
    assert!(url.starts_with(&format!("{APP_ORIGIN}/launch?")));
    let query: Vec<(String, String)> =
        form_urlencoded::parse(url.split_once('?').unwrap().1.as_bytes())
            .into_owned()
            .collect();
    let launch = param(&query, "launch").unwrap().to_owned();
    assert_eq!(
        param(&query, "iss"),
        Some(format!("http://{}", flow.hub.addr).as_str())
    );
    assert!(flow.hub.hub.launch_url("ghost").is_none());

    flow.hub
        .hub
        .auth()
        .smart()
        .set_consent(&flow.client_id, Consent::Approved)
        .unwrap();
    let mut params = flow.authorize_params();
    params.retain(|(k, _)| *k != "aud");
    params.push(("aud", format!("http://{}", flow.hub.addr)));
    params.push(("launch", launch));
    code_of(&flow.authorize_with(&params).await);

    params.retain(|(k, _)| *k != "launch");
    params.push(("launch", "made-up".into()));
    let (_, pairs) = location(&flow.authorize_with(&params).await);
    assert_eq!(param(&pairs, "error"), Some("invalid_request"));
}

/// IT's pre-approval: no page, a code at once.
#[tokio::test]
async fn preapproved_app_gets_no_consent_page() {
    let hub = TestHub::start_with_auth().await;
    let app = hub
        .hub
        .auth()
        .register_browser_app(
            "Worklist",
            "fhircast/*.read",
            vec![],
            BrowserApp {
                redirect_uris: vec![REDIRECT.to_owned()],
                launch_url: None,
                preapproved: true,
            },
        )
        .unwrap();
    let flow = Flow {
        hub,
        http: lockstep_hub::tls::http_client()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        client_id: app.client_id,
    };
    let code = flow.authorize_code_again().await;
    assert_eq!(flow.exchange(&code, Some(VERIFIER)).await.0, 200);
    // A public client has no secret: client_credentials is no way in.
    let (status, _) = flow
        .hub
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", &flow.client_id),
            ("client_secret", ""),
        ])
        .await;
    assert_eq!(status, 401);
}

/// The dashboard registers a browser app (no secret), shows its consent
/// and withdraws it; a bad redirect URI is refused and registers nothing.
#[tokio::test]
async fn dashboard_registers_browser_apps_and_withdraws_consent() {
    let flow = Flow::start().await;
    let admin = format!("Bearer {}", flow.hub.hub.admin_token());
    let send = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut req = flow
            .http
            .request(method, flow.hub.url(&path))
            .header("authorization", admin.clone());
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move { req.send().await.expect("admin request") }
    };
    use reqwest::Method;
    let before = flow.hub.hub.apps().list().len();
    let bad = serde_json::json!({"name": "Bad", "scopes": "fhircast/*.read",
        "redirectUris": ["javascript:alert(1)"]});
    assert_eq!(
        send(Method::POST, "/admin/api/apps".into(), Some(bad))
            .await
            .status(),
        400
    );
    assert_eq!(flow.hub.hub.apps().list().len(), before, "nothing added");

    let new = serde_json::json!({"name": "RIS Web", "scopes": "fhircast/*.read",
        "redirectUris": ["https://ris.example/cb"], "launchUrl": "https://ris.example/launch"});
    let res = send(Method::POST, "/admin/api/apps".into(), Some(new)).await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    assert_eq!(created["clientSecret"], Value::Null, "a public client");
    let id = created["app"]["clientId"].as_str().unwrap().to_owned();
    assert!(flow
        .hub
        .hub
        .auth()
        .browser_origin_allowed("https://ris.example"));

    // The consent of the flow's app: asked, approved, withdrawn.
    let path = format!("/admin/api/apps/{}/consent", flow.client_id);
    let shown: Value = send(Method::GET, path.clone(), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["consent"], Value::Null);
    let code = flow.code().await;
    let (_, token) = flow.exchange(&code, Some(VERIFIER)).await;
    let listed: Value = send(Method::GET, "/admin/api/apps".into(), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["browserApps"][&flow.client_id]["consent"],
        "approved"
    );
    assert_eq!(
        listed["browserApps"][&id]["redirectUris"][0],
        "https://ris.example/cb"
    );
    assert_eq!(send(Method::DELETE, path.clone(), None).await.status(), 200);
    let refresh = token["refresh_token"].as_str().unwrap();
    assert_eq!(flow.refresh(refresh).await.0, 400, "refresh ended");
    assert_eq!(
        flow.authorize_with(&flow.authorize_params()).await.status(),
        200,
        "the consent page again"
    );
    assert_eq!(
        send(Method::DELETE, "/admin/api/apps/ghost/consent".into(), None)
            .await
            .status(),
        404
    );
}

/// A refresh never widens the grant (RFC 6749 §6), and a scope change of
/// the app's registration asks the clinician again.
#[tokio::test]
async fn refresh_cannot_widen_and_a_scope_change_asks_again() {
    let hub = TestHub::start_with_auth().await;
    hub.hub
        .auth()
        .smart()
        .save_app(
            "ris-web",
            BrowserApp {
                redirect_uris: vec![REDIRECT.to_owned()],
                launch_url: None,
                preapproved: false,
            },
        )
        .unwrap();
    hub.hub
        .apps()
        .provision("ris-web", "RIS Web", "fhircast/*.*", vec![], None)
        .unwrap();
    let flow = Flow {
        hub,
        http: lockstep_hub::tls::http_client()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        client_id: "ris-web".into(),
    };
    let mut params = flow.authorize_params();
    params.retain(|(k, _)| *k != "scope");
    params.push(("scope", "fhircast/*.read".into()));
    let token = flow.consent_page_for(&params).await;
    let code = code_of(&flow.decide(&token, "approve").await);
    let (_, issued) = flow.exchange(&code, Some(VERIFIER)).await;
    assert_eq!(issued["scope"], "fhircast/*.read");
    let (status, wider) = flow
        .hub
        .token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", issued["refresh_token"].as_str().unwrap()),
            ("client_id", "ris-web"),
            ("scope", "fhircast/*.read fhircast/*.write"),
        ])
        .await;
    assert_eq!(status, 200, "{wider}");
    assert_eq!(wider["scope"], "fhircast/*.read", "not widened");

    flow.hub
        .hub
        .apps()
        .provision("ris-web", "RIS Web", "fhircast/*.read", vec![], None)
        .unwrap();
    assert_eq!(flow.hub.hub.auth().smart().consent("ris-web"), None);
    assert_eq!(
        flow.refresh(wider["refresh_token"].as_str().unwrap())
            .await
            .0,
        400
    );
    assert_eq!(
        flow.authorize_with(&params).await.status(),
        200,
        "asked again"
    );
}

/// Every open consent page holds an entry: a page that loops on
/// authorize fills the table and is refused; it does not grow the hub.
#[tokio::test]
async fn open_consent_requests_are_capped() {
    use lockstep_hub::auth::smart::MAX_ENTRIES;
    let flow = Flow::start().await;
    let mut events = flow.hub.hub.events();
    for _ in 0..MAX_ENTRIES {
        assert_eq!(
            flow.authorize_with(&flow.authorize_params()).await.status(),
            200
        );
    }
    let (_, pairs) = location(&flow.authorize_with(&flow.authorize_params()).await);
    assert_eq!(param(&pairs, "error"), Some("temporarily_unavailable"));
    assert_eq!(flow.hub.hub.auth().smart().sizes().1, MAX_ENTRIES);
    // The tray was told once, not once per reload.
    let mut told = 0;
    while let Ok(event) = events.try_recv() {
        told += usize::from(matches!(event, HubEvent::ConsentRequested { .. }));
    }
    assert_eq!(told, 1);
}

impl Flow {
    async fn consent_page_for(&self, params: &[(&str, String)]) -> String {
        let html = self.authorize_with(params).await.text().await.unwrap();
        let marker = "name=\"request\" value=\"";
        let start = html.find(marker).expect("a consent form") + marker.len();
        html[start..start + html[start..].find('"').unwrap()].to_owned()
    }
}

/// `lockstep-hub apps add --redirect-uri` registers a public client that a
/// hub on the same data folder and secret store serves; a bad URI is
/// refused and registers nothing; `apps forget-consent` withdraws.
#[tokio::test]
async fn cli_registers_a_browser_app() {
    let dir = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| {
        binary::HubCommand::new(dir.path())
            .arg("apps")
            .args(args)
            .args(["--secret-store", "file"])
            .output()
    };
    let (ok, _) =
        ok_and_stdout(cli(&["add", "Bad", "--redirect-uri", "javascript:alert(1)"]).await);
    assert!(!ok, "a bad redirect URI is refused");
    assert_eq!(
        ok_and_stdout(cli(&["list"]).await).1.trim(),
        "",
        "nothing registered"
    );
    let (ok, added) = ok_and_stdout(
        cli(&[
            "add",
            "Web Viewer",
            "--redirect-uri",
            REDIRECT,
            "--launch-url",
            &format!("{APP_ORIGIN}/launch"),
        ])
        .await,
    );
    assert!(ok, "{added}");
    assert!(added.contains("public client"), "{added}");
    assert!(!added.contains("client_secret"), "no secret: {added}");
    assert!(
        added.contains(&format!("origins:       {APP_ORIGIN}")),
        "{added}"
    );
    let client_id = printed_field(&added, "client_id:");

    let store = std::sync::Arc::new(lockstep_hub::auth::FileStore::new(
        dir.path().join("secrets.json"),
    ));
    let hub = TestHub::start_with(|c| {
        c.no_auth = false;
        c.data_dir = dir.path().to_path_buf();
        c.secret_store = store;
    })
    .await;
    let flow = Flow {
        hub,
        http: lockstep_hub::tls::http_client()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        client_id: client_id.clone(),
    };
    let token = flow.consent_page_for(&flow.authorize_params()).await;
    let code = code_of(&flow.decide(&token, "approve").await);
    assert_eq!(flow.exchange(&code, Some(VERIFIER)).await.0, 200);

    let (ok, _) = ok_and_stdout(cli(&["forget-consent", &client_id]).await);
    assert!(ok);
    assert_eq!(flow.hub.hub.auth().smart().consent(&client_id), None);
    assert!(!ok_and_stdout(cli(&["forget-consent", "ghost"]).await).0);
}

/// Whether a CLI run succeeded, and what it printed.
fn ok_and_stdout(out: std::process::Output) -> (bool, String) {
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `[[apps]]` in the system file registers a browser app (pre-approved:
/// no page); `preapproved` in a user file is refused; a bad redirect URI
/// stops the system file with its name.
#[tokio::test]
async fn settings_files_register_browser_apps() {
    use lockstep_hub::settings::{Layout, Settings};
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout {
        system: dir.path().join("system.toml"),
        user: dir.path().join("user.toml"),
    };
    let app = |extra: &str| {
        format!(
            "[[apps]]\nclient_id = \"web\"\nname = \"Web\"\nscopes = \"fhircast/*.read\"\n\
             redirect_uris = [\"{REDIRECT}\"]\n{extra}"
        )
    };
    std::fs::write(&layout.user, app("preapproved = true\n")).unwrap();
    let s = Settings::load(&layout).unwrap();
    assert!(s.apps.is_empty(), "ignored");
    assert!(s.warnings.iter().any(|w| w.contains("system file only")));

    std::fs::write(&layout.user, "").unwrap();
    std::fs::write(
        &layout.system,
        "[[apps]]\nclient_id = \"web\"\nname = \"Web\"\nscopes = \"fhircast/*.read\"\n\
         redirect_uris = [\"ftp://x/\"]\n",
    )
    .unwrap();
    assert!(Settings::load(&layout).is_err(), "a bad URI stops the hub");

    std::fs::write(&layout.system, app("preapproved = true\n")).unwrap();
    let s = Settings::load(&layout).unwrap();
    let hub = TestHub::start_with_auth().await;
    s.provision_into(&hub.hub);
    let flow = Flow {
        hub,
        http: lockstep_hub::tls::http_client()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        client_id: "web".into(),
    };
    let code = flow.authorize_code_again().await;
    assert_eq!(flow.exchange(&code, Some(VERIFIER)).await.0, 200);
    assert!(flow.hub.hub.auth().browser_origin_allowed(APP_ORIGIN));
}
