//! The dashboard's admin API on a real server: who may use it (bearer
//! token, one-time link, session cookie, nothing else), the live feed, the
//! UI files, and the link `lockstep-hub` prints.

mod admin_support;
mod common;

use admin_support::*;
use common::binary::HubCommand;
use common::*;
use serde_json::Value;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[tokio::test]
async fn no_credential_is_refused_everywhere() {
    let hub = TestHub::start().await;
    let topic = topic();
    let _app = hub.join(&topic, "Patient-open", "RIS").await;
    let endpoint = of_topic(&get_state(&hub).await, &topic)["subscriptions"][0]["endpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    let gets = [
        "/admin/api/state",
        "/admin/api/events.ndjson",
        "/admin/api/apps",
    ];
    for path in gets {
        for auth in [
            None,
            Some("Bearer not-the-token"),
            Some("Basic YWRtaW46YWRtaW4="),
        ] {
            let mut req = hub.http.get(hub.url(path));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 401, "{path} with {auth:?}");
            let body: Value = res.json().await.expect("JSON error");
            assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
        }
    }
    let actions = [
        "/admin/api/pause".to_owned(),
        "/admin/api/resume".to_owned(),
        format!("/admin/api/topics/{topic}/close-all"),
        format!("/admin/api/subscriptions/{endpoint}/drop"),
        "/admin/api/session".to_owned(),
    ];
    for path in &actions {
        let res = hub.http.post(hub.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 401, "{path}");
    }
    let cookie = ("cookie", "lockstep_admin=guess".to_owned());
    assert_eq!(live(&hub, None).await.err(), Some(401.try_into().unwrap()));
    assert_eq!(
        live(&hub, Some(cookie)).await.err(),
        Some(401.try_into().unwrap())
    );
    // Nothing happened.
    assert!(!hub.hub.is_paused());
    assert_eq!(hub.hub.counts(), (1, 1));
}

#[tokio::test]
async fn the_bearer_token_opens_the_api_and_the_live_feed() {
    let hub = TestHub::start().await;
    let token = hub.hub.admin_token().to_owned();
    assert!(token.len() >= 32, "at least 128 bits");
    let state = get_state(&hub).await;
    assert_eq!(state["hub"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(state["hub"]["url"], hub.hub_url());
    assert_eq!(state["hub"]["paused"], false);
    assert!(state["settings"]["ackTimeoutMs"]["value"].is_u64());

    let mut feed = live(&hub, Some(("authorization", bearer(&hub))))
        .await
        .expect("live feed");
    let topic = topic();
    let mut app = hub.join(&topic, "Patient-open", "PACS").await;
    let connected = live_message(&mut feed, "connected").await;
    assert_eq!(connected["subscriber"], "PACS");
    hub.publish_ok(&patient_open(&topic, "p1")).await;
    let published = live_message(&mut feed, "published").await;
    assert_eq!(published["event"], "Patient-open");
    app.next_event().await;
    // The live feed carries names, never patient data.
    assert!(!published.to_string().contains("p1"));

    let state = get_state(&hub).await;
    let sub = &of_topic(&state, &topic)["subscriptions"][0];
    assert_eq!(sub["name"], "PACS");
    assert_eq!(sub["state"], "connected");
    assert_eq!(sub["endpoint"].as_str().unwrap().len(), 8, "short ids only");
    let events = state["events"].as_array().unwrap();
    assert_eq!(
        events.last().unwrap()["event"]["event"]["hub.event"],
        "Patient-open"
    );
    assert_eq!(events.last().unwrap()["deliveredTo"][0], "PACS");
}

#[tokio::test]
async fn a_one_time_link_works_once_and_sets_a_strict_cookie() {
    let hub = TestHub::start().await;
    let link = hub.hub.one_time_link();
    // `run` records the bound address in its own task; the path is what counts.
    let at = link.find("/admin/login?code=").expect("login path");
    assert!(link.starts_with("http://127.0.0.1:"), "{link}");
    let link = hub.url(&link[at..]);
    let code = link.rsplit('=').next().unwrap();
    assert!(code.len() >= 32, "at least 128 bits");
    let client = lockstep_hub::tls::http_client()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = client.get(&link).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/ui/");
    let set_cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    assert!(cookie.starts_with("lockstep_admin="));

    let again = client.get(&link).send().await.unwrap();
    assert_eq!(again.status(), 401, "a used link is refused");
    assert!(again.headers().get("set-cookie").is_none());

    let state = client
        .get(hub.url("/admin/api/state"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(state.status(), 200);
    live(&hub, Some(("cookie", cookie.clone())))
        .await
        .expect("the cookie opens the live feed");
    // A page of another site may not open the feed with the cookie.
    let mut req = format!("ws://{}/admin/api/live", hub.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    req.headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tungstenite::Error::Http(res)) => assert_eq!(res.status(), 403),
        other => panic!(
            "cross-site live feed must be refused: {:?}",
            other.map(|_| ())
        ),
    }
}

#[tokio::test]
async fn the_ui_is_served_from_the_binary() {
    let hub = TestHub::start().await;
    let client = lockstep_hub::tls::http_client()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = client.get(hub.url("/ui")).send().await.unwrap();
    assert_eq!(res.status(), 308);
    assert_eq!(res.headers()["location"], "/ui/");
    for (path, ct) in [
        ("/ui/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let res = client.get(hub.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let got = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(got.starts_with(ct), "{path}: {got}");
        assert!(!res.text().await.unwrap().is_empty());
    }
    let html = client.get(hub.url("/ui/")).send().await.unwrap();
    let csp = html.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert_eq!(
        client
            .get(hub.url("/ui/nope.js"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

/// One raw HTTP/1.1 GET; returns the status line and headers.
fn raw_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// `lockstep-hub` prints a one-time link after its ready line, or nothing
/// with `--no-dashboard-link`.
#[tokio::test]
async fn the_binary_prints_a_one_time_link_unless_told_not_to() {
    for quiet in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut binary = HubCommand::new(dir.path())
            .args(["--listen", "127.0.0.1:0", "--no-auth"])
            .discard_log();
        if quiet {
            binary = binary.arg("--no-dashboard-link");
        }
        let mut hub = binary.start().await;
        let ready = hub.ready.clone();
        let addr = ready
            .trim()
            .strip_prefix("Lockstep hub ready at http://")
            .and_then(|r| r.split('/').next())
            .unwrap_or_else(|| panic!("ready line: {ready:?}"))
            .to_owned();
        if quiet {
            // Once the server answers, anything printed before it is out.
            assert!(raw_get(&addr, "/").starts_with("HTTP/1.1 200"));
            hub.kill().await;
            let mut rest = String::new();
            while let Some(line) = hub.stdout_line().await {
                rest.push_str(&line);
            }
            assert!(!rest.contains("Dashboard"), "{rest}");
        } else {
            let line = hub.stdout_line().await.unwrap_or_default();
            let link = line
                .trim()
                .strip_prefix("Dashboard (one-time link): ")
                .unwrap_or_else(|| panic!("link line: {line:?}"));
            let path = &link[link.find("/admin/login").unwrap()..];
            assert!(link.starts_with(&format!("http://{addr}/")), "{link}");
            let first = raw_get(&addr, path);
            assert!(first.starts_with("HTTP/1.1 303"), "{first}");
            assert!(raw_get(&addr, path).starts_with("HTTP/1.1 401"));
            hub.kill().await;
        }
    }
}

/// Issue 19: the dashboard shows and edits whether an app sends ACKs;
/// `AppRegistry::acknowledges` follows; bad bodies and unknown apps are
/// refused and change nothing.
#[tokio::test]
async fn the_dashboard_marks_an_app_that_never_acknowledges() {
    let hub = TestHub::start().await;
    let send = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut req = hub
            .http
            .request(method, hub.url(&path))
            .header("authorization", bearer(&hub));
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move { req.send().await.expect("admin request") }
    };
    use reqwest::Method;
    let new =
        serde_json::json!({"name": "OHIF", "scopes": "fhircast/*.read", "acknowledges": false});
    let res = send(Method::POST, "/admin/api/apps".into(), Some(new)).await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    assert_eq!(created["app"]["acknowledges"], false);
    let id = created["app"]["clientId"].as_str().unwrap().to_owned();
    assert!(!hub.hub.apps().acknowledges(&id));

    let path = format!("/admin/api/apps/{id}");
    let on = serde_json::json!({"acknowledges": true});
    let res = send(Method::PATCH, path.clone(), Some(on)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap()["app"]["acknowledges"],
        true
    );
    assert!(hub.hub.apps().acknowledges(&id));
    let listed = admin_get(&hub, "/admin/api/apps").await;
    assert_eq!(listed["apps"][0]["acknowledges"], true);

    for bad in [
        serde_json::json!({"acknowledges": "no"}),
        serde_json::json!({"name": "renamed"}),
    ] {
        let res = send(Method::PATCH, path.clone(), Some(bad.clone())).await;
        assert_eq!(res.status(), 400, "{bad}");
    }
    assert!(hub.hub.apps().acknowledges(&id), "unchanged");
    let off = serde_json::json!({"acknowledges": false});
    let res = send(Method::PATCH, "/admin/api/apps/nobody".into(), Some(off)).await;
    assert_eq!(res.status(), 404);
}
