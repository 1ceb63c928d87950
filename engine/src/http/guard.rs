//! Who may use the HTTP port: the user's own programs and the node's own page, never another
//! web site the user happens to visit.
//!
//! - **Host.** A page on another site can make the browser send requests to the port under
//!   the site's own name (DNS rebinding): such a request carries that name in `Host`. Only an
//!   IP address, `localhost`, or a name the user allowed (`--http-allow-host`) is answered.
//! - **Origin and fetch metadata.** A request that changes something (any method but GET and
//!   HEAD) with an `Origin` must come from the port's own origin. A browser's request that
//!   another site started (`Sec-Fetch-Site` other than `same-origin` or `none`) is refused,
//!   but for following a link (a GET navigation, which the site cannot read).
//! - **Credentials.** In a private swarm every request carries the swarm's secret; with
//!   `--http-token` every request carries that token: `Authorization: Bearer TOKEN` (the
//!   scheme in any case) or `?token=TOKEN` (percent-encoded), for players and links.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use swarm_proto::access::Access;

use super::app::problem;

/// What the guard checks requests against.
#[derive(Debug, Clone)]
pub(super) struct Guard {
    /// Host names answered besides IP addresses and `localhost` (lowercase; `*` for any).
    pub(super) allow_hosts: Arc<Vec<String>>,
    /// The credential every request must carry, if any.
    pub(super) credential: Credential,
}

/// What a request must carry.
#[derive(Debug, Clone)]
pub(super) enum Credential {
    /// Nothing.
    None,
    /// The private swarm's secret.
    Secret(Access),
    /// A token the user chose.
    Token(Arc<String>),
}

impl Guard {
    /// The guard for a port in a swarm of `access`, with the user's `token` and host names.
    pub(super) fn new(access: Access, token: Option<String>, allow_hosts: &[String]) -> Guard {
        let credential = match (token, &access) {
            (Some(token), _) => Credential::Token(Arc::new(token)),
            (None, Access::Private(_)) => Credential::Secret(access),
            (None, Access::Open) => Credential::None,
        };
        Guard {
            allow_hosts: Arc::new(allow_hosts.iter().map(|h| h.to_ascii_lowercase()).collect()),
            credential,
        }
    }

    /// Why `request` is refused, if it is: the status and a sentence.
    fn refusal(&self, method: &Method, headers: &HeaderMap, query: &str) -> Option<(StatusCode, String)> {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        if let Some(host) = host {
            if !self.host_allowed(host) {
                return Some((
                    StatusCode::FORBIDDEN,
                    format!(
                        "this port answers to its IP address and localhost, not to `{host}` (a web page may \
                         be trying to reach it under its own name); to use that name, start the node with \
                         --http-allow-host {}",
                        host_name(host)
                    ),
                ));
            }
        }
        let reads_only = *method == Method::GET || *method == Method::HEAD;
        let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        let navigating = headers
            .get("sec-fetch-mode")
            .is_some_and(|v| v.as_bytes() == b"navigate");
        if site.is_some_and(|site| site != "same-origin" && site != "none") && !(reads_only && navigating) {
            return Some((
                StatusCode::FORBIDDEN,
                "another web site started this request; the port answers its own page and local programs only".into(),
            ));
        }
        if !reads_only {
            if let Some(origin) = headers.get(header::ORIGIN) {
                let own = host.map(|host| format!("http://{host}"));
                if own.as_deref().is_none_or(|own| origin.as_bytes() != own.as_bytes()) {
                    return Some((
                        StatusCode::FORBIDDEN,
                        format!(
                            "a request from {} may not change anything here; only this port's own page may",
                            origin.to_str().unwrap_or("another origin")
                        ),
                    ));
                }
            }
        }
        self.credential_refusal(headers, query)
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        let unbracketed = name.trim_start_matches('[').trim_end_matches(']');
        unbracketed.parse::<IpAddr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
            || self.allow_hosts.contains(&name)
            || self.allow_hosts.iter().any(|allowed| allowed == "*")
    }

    fn credential_refusal(&self, headers: &HeaderMap, query: &str) -> Option<(StatusCode, String)> {
        let accepted = |token: &str| match &self.credential {
            Credential::None => true,
            Credential::Secret(Access::Private(key)) => key.is_secret(token),
            Credential::Secret(Access::Open) => true,
            Credential::Token(expected) => constant_time_eq(token.as_bytes(), expected.as_bytes()),
        };
        if matches!(self.credential, Credential::None) {
            return None;
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().to_owned());
        let in_query = form_urlencoded_value(query, "token");
        if bearer.iter().chain(in_query.iter()).any(|token| accepted(token)) {
            return None;
        }
        let what = match self.credential {
            Credential::Token(_) => "this port needs its token (--http-token)",
            _ => "this node is in a private swarm: send its secret (the text of its --secret-file)",
        };
        Some((
            StatusCode::UNAUTHORIZED,
            format!("{what} as `Authorization: Bearer TOKEN`, or as ?token=TOKEN"),
        ))
    }
}

/// The host part of a `Host` header (without the port).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// The value of `key` in a query string, percent-decoded (`+` is a space), if present.
fn form_urlencoded_value(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find_map(|(k, v)| (k == key).then(|| v.into_owned()))
}

/// Compares two byte strings in time that does not depend on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The middleware: refuses what [`Guard`] refuses, before any handler runs.
pub(super) async fn check(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let query = request.uri().query().unwrap_or("");
    match guard.refusal(request.method(), request.headers(), query) {
        None => next.run(request).await,
        Some((status, message)) => {
            let mut refusal = problem(status, message);
            if status == StatusCode::UNAUTHORIZED {
                refusal
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            }
            refusal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn only_addresses_localhost_and_allowed_names_are_answered() {
        let guard = Guard::new(Access::Open, None, &["nas.home".into()]);
        for host in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost:8080",
            "app.localhost",
            "NAS.home:80",
            "10.0.0.5",
        ] {
            assert!(
                guard.refusal(&Method::GET, &headers(&[("host", host)]), "").is_none(),
                "{host}"
            );
        }
        for host in [
            "attacker.example:8080",
            "127.0.0.1.attacker.example",
            "localhost.attacker.example:80",
        ] {
            let (status, why) = guard.refusal(&Method::GET, &headers(&[("host", host)]), "").unwrap();
            assert_eq!(status, StatusCode::FORBIDDEN, "{host}");
            assert!(why.contains("--http-allow-host"), "{why}");
        }
    }

    #[test]
    fn other_sites_change_nothing() {
        let guard = Guard::new(Access::Open, None, &[]);
        let host = ("host", "127.0.0.1:8080");
        let post = Method::POST;
        assert!(guard.refusal(&post, &headers(&[host]), "").is_none(), "curl");
        assert!(guard
            .refusal(
                &post,
                &headers(&[
                    host,
                    ("origin", "http://127.0.0.1:8080"),
                    ("sec-fetch-site", "same-origin")
                ]),
                ""
            )
            .is_none());
        assert!(guard
            .refusal(&post, &headers(&[host, ("origin", "http://evil.example")]), "")
            .is_some());
        assert!(guard
            .refusal(&post, &headers(&[host, ("origin", "null")]), "")
            .is_some());
        assert!(guard
            .refusal(&post, &headers(&[host, ("sec-fetch-site", "cross-site")]), "")
            .is_some());
        assert!(guard
            .refusal(
                &Method::GET,
                &headers(&[host, ("sec-fetch-site", "same-site"), ("sec-fetch-mode", "cors")]),
                ""
            )
            .is_some());
        // Following a link from elsewhere is fine: the other site cannot read the answer.
        assert!(guard
            .refusal(
                &Method::GET,
                &headers(&[host, ("sec-fetch-site", "cross-site"), ("sec-fetch-mode", "navigate")]),
                ""
            )
            .is_none());
    }

    #[test]
    fn tokens_in_any_scheme_case_and_percent_encoded() {
        let guard = Guard::new(Access::Open, Some("a+b%&c d".into()), &[]);
        let host = ("host", "127.0.0.1:1");
        assert_eq!(
            guard.refusal(&Method::GET, &headers(&[host]), "").unwrap().0,
            StatusCode::UNAUTHORIZED
        );
        assert!(guard
            .refusal(
                &Method::GET,
                &headers(&[host, ("authorization", "bearer a+b%&c d")]),
                ""
            )
            .is_none());
        assert!(guard
            .refusal(
                &Method::GET,
                &headers(&[host, ("authorization", "Bearer a+b%&c d")]),
                ""
            )
            .is_none());
        assert!(guard
            .refusal(&Method::GET, &headers(&[host]), "x=1&token=a%2Bb%25%26c+d")
            .is_none());
        assert!(guard.refusal(&Method::GET, &headers(&[host]), "token=a+b").is_some());
        assert!(guard
            .refusal(&Method::GET, &headers(&[host, ("authorization", "Basic a+b%&c d")]), "")
            .is_some());
    }
}
