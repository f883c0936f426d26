//! Intent verification (checklist 116, 118, 119): the hub's `GET` to a
//! webhook's callback, which must echo `hub.challenge`.

use tokio::time::{timeout, Duration};

use super::Target;
use crate::ids;

/// A challenge echo is short; anything longer is not one.
const MAX_ECHO: usize = 1024;

/// Intent verification (checklist 116, 118, 119): `GET` the callback with
/// the hub's parameters appended to its own query string; only a 2xx whose
/// body is exactly the challenge agrees. 404 is the app's "no"; other
/// statuses (redirects are not followed), a wrong body, or no answer in
/// time fail too.
pub(super) async fn verify(
    target: &Target,
    mode: &str,
    topic: &str,
    events: &str,
    lease: Option<u64>,
    limit: Duration,
) -> Result<(), String> {
    let challenge = ids::endpoint_id();
    let mut url = target.url.clone();
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("hub.mode", mode)
            .append_pair("hub.topic", topic)
            .append_pair("hub.events", events)
            .append_pair("hub.challenge", &challenge);
        if let Some(lease) = lease {
            query.append_pair("hub.lease_seconds", &lease.to_string());
        }
    }
    let answer = timeout(limit, async {
        let mut res = target.client.get(url).send().await?;
        let status = res.status();
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_ECHO {
                break;
            }
        }
        Ok::<_, reqwest::Error>((status, body))
    })
    .await;
    let (status, body) = match answer {
        Err(_) => return Err(format!("no answer within {} ms", limit.as_millis())),
        Ok(Err(e)) => return Err(format!("callback unreachable: {}", e.without_url())),
        Ok(Ok(answer)) => answer,
    };
    if status.as_u16() == 404 {
        return Err("the app refused (HTTP 404)".to_owned());
    }
    if !status.is_success() {
        let note = if status.is_redirection() {
            "; redirects are not followed"
        } else {
            ""
        };
        return Err(format!(
            "the callback answered HTTP {}{note}",
            status.as_u16()
        ));
    }
    if body != challenge.as_bytes() {
        return Err("the callback did not echo hub.challenge exactly".to_owned());
    }
    Ok(())
}
