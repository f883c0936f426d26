//! Where a webhook may point (hub-digest §10: the hub pushes PHI to
//! endpoints that apps choose). By default only to this computer: the
//! callback's host must RESOLVE to loopback addresses only, and the HTTP
//! client is pinned to the addresses that were checked, so a DNS answer that
//! changes later (rebinding) cannot redirect deliveries. Redirects are
//! never followed and proxies from the environment are ignored. Other
//! hosts need `Config::webhook_allowed_hosts` (`--allow-webhook-host`).

use std::net::{IpAddr, SocketAddr};

use axum::http::StatusCode;
use reqwest::Url;
use tokio::time::{timeout, Duration};

use crate::error::ApiError;

/// Longest a name lookup may take while the subscriber waits for its 202.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// A checked callback: its URL (query string kept, checklist 118) and a
/// client that only ever connects to the checked addresses.
#[derive(Clone)]
pub(crate) struct Target {
    pub url: Url,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
}

impl Target {
    /// `host:port` of the callback, for logs and default names; the path
    /// and query may be the app's unguessable part, so they stay out.
    pub fn label(&self) -> String {
        match (self.url.host_str(), self.url.port_or_known_default()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            _ => self.addr.to_string(),
        }
    }
}

fn refused(msg: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, msg)
}

/// Parses, resolves and checks `hub.callback`.
pub(crate) async fn check(
    callback: &str,
    allowed: &[String],
    per_request: Duration,
) -> Result<Target, ApiError> {
    let url = Url::parse(callback)
        .map_err(|e| ApiError::bad_request(format!("hub.callback is not a valid URL: {e}")))?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(ApiError::bad_request(
                "hub.callback must be an http:// URL: Lockstep delivers webhooks to apps on this \
                 computer over loopback and has no TLS client",
            ))
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "hub.callback must be an http:// URL, not {other}:"
            )))
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ApiError::bad_request(
            "hub.callback must not carry a user name or password",
        ));
    }
    if url.fragment().is_some() {
        return Err(ApiError::bad_request(
            "hub.callback must not have a #fragment",
        ));
    }
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return Err(ApiError::bad_request("hub.callback has no host"));
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    // The URL parser already turned numeric hosts into addresses.
    let (name, addrs): (Option<String>, Vec<IpAddr>) = match bare.parse::<IpAddr>() {
        Ok(ip) => (None, vec![ip]),
        Err(_) => {
            let found = timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((bare, port)))
                .await
                .map_err(|_| {
                    ApiError::bad_request(format!(
                        "hub.callback host {bare:?} did not resolve in time"
                    ))
                })?
                .map_err(|e| {
                    ApiError::bad_request(format!(
                        "hub.callback host {bare:?} does not resolve: {e}"
                    ))
                })?;
            let mut addrs: Vec<IpAddr> = Vec::new();
            for a in found {
                if !addrs.contains(&a.ip()) {
                    addrs.push(a.ip());
                }
            }
            (Some(bare.to_owned()), addrs)
        }
    };
    let ip = permitted(host, &addrs, allowed).map_err(refused)?;
    let addr = SocketAddr::new(ip, port);
    let checked: Vec<SocketAddr> = addrs.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
    let mut builder = crate::tls::http_client()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(per_request)
        .pool_max_idle_per_host(1);
    if let Some(name) = &name {
        // Every request on this client goes to the addresses checked above
        // (all of them passed; `localhost` may be ::1 or 127.0.0.1).
        builder = builder.resolve_to_addrs(name, &checked);
    }
    let client = builder.build().map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot build the webhook client: {e}"),
        )
    })?;
    Ok(Target { url, addr, client })
}

/// The first address `host` resolved to, if every one of them may be
/// called: loopback, or allowed by name or by address.
pub(crate) fn permitted(
    host: &str,
    addrs: &[IpAddr],
    allowed: &[String],
) -> Result<IpAddr, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let name_allowed = allowed.iter().any(|a| {
        let a = a.trim().trim_start_matches('[').trim_end_matches(']');
        a.eq_ignore_ascii_case(bare)
    });
    let ip_allowed = |ip: &IpAddr| {
        allowed
            .iter()
            .filter_map(|a| {
                a.trim()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .ok()
            })
            .any(|a| a == *ip)
    };
    let Some(first) = addrs.first() else {
        return Err(format!("hub.callback host {host} has no address"));
    };
    for ip in addrs {
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(format!(
                "hub.callback host {host} is {ip}, which cannot receive webhooks"
            ));
        }
        if !(is_loopback(ip) || name_allowed || ip_allowed(ip)) {
            return Err(format!(
                "hub.callback host {host} is {ip}, which is not on this computer: webhooks go only \
                 to loopback addresses unless the host is allowed (--allow-webhook-host)"
            ));
        }
    }
    Ok(*first)
}

fn is_loopback(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn loopback_only_by_default() {
        let none: &[String] = &[];
        assert!(permitted("localhost", &ips(&["127.0.0.1", "::1"]), none).is_ok());
        assert!(permitted("127.1.2.3", &ips(&["127.1.2.3"]), none).is_ok());
        assert!(permitted("x", &ips(&["::ffff:127.0.0.1"]), none).is_ok());
        // A name that resolves to another machine, or to both: refused.
        let e = permitted("app.example", &ips(&["10.0.0.5"]), none).unwrap_err();
        assert!(
            e.contains("10.0.0.5") && e.contains("not on this computer"),
            "{e}"
        );
        assert!(permitted("mixed", &ips(&["127.0.0.1", "192.168.1.9"]), none).is_err());
        assert!(permitted("0.0.0.0", &ips(&["0.0.0.0"]), none).is_err());
        assert!(permitted("nothing", &[], none).is_err());
    }

    #[test]
    fn allow_list_by_name_or_address() {
        let allowed = vec!["Reporting.Hospital.org".to_owned(), "10.0.0.7".to_owned()];
        assert!(permitted("reporting.hospital.org", &ips(&["10.1.1.1"]), &allowed).is_ok());
        assert!(permitted("other.hospital.org", &ips(&["10.0.0.7"]), &allowed).is_ok());
        assert!(permitted("other.hospital.org", &ips(&["10.0.0.8"]), &allowed).is_err());
        let v6 = vec!["[fd00::1]".to_owned()];
        assert!(permitted("[fd00::1]", &ips(&["fd00::1"]), &v6).is_ok());
    }
}
