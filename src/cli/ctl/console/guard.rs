//! The console's local web security as one pure check, run on every request before routing.
//!
//! In order: `Host` must name the listen address (or `localhost:PORT`), which defeats DNS
//! rebinding (a hostile name resolved to 127.0.0.1 still sends its own name); `Origin`, when
//! present, must be this origin, and a POST must carry one (a cross-site form or fetch cannot
//! pass); `Sec-Fetch-Site`, when present, must be `same-origin` or `none` (typed by the user);
//! then the per-launch secret, from the URL (`?secret=`, only on `GET /`) or from the cookie the
//! console set. Nothing here reads time, state or the network: a table test covers it.

use std::net::SocketAddr;

/// What a request must match. Built once per launch.
#[derive(Debug, Clone)]
pub struct Expected {
    /// Every accepted `Host` value: the listen address and `localhost:PORT`.
    hosts: Vec<String>,
    /// The per-launch secret (128-bit random, hex).
    secret: String,
    /// The cookie carrying the secret; the port is in the name because cookies are per host,
    /// not per port, and two consoles on one machine must not overwrite each other's.
    cookie_name: String,
}

/// How a request proved it holds the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// The cookie set by an earlier visit.
    Cookie,
    /// `GET /?secret=…`: the server answers with the cookie and a redirect that drops it from
    /// the address bar.
    UrlSecret,
}

/// Why a request was refused (the response says which rule, never the secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The `Host` header is missing or names another host (DNS rebinding).
    #[error("Host {0:?} is not this console's address")]
    Host(String),
    /// `Origin` names another origin (a cross-site request).
    #[error("Origin {0:?} is not this console's origin")]
    Origin(String),
    /// A POST without `Origin`: its source cannot be told, so it is refused.
    #[error("a POST must carry an Origin header")]
    MissingOrigin,
    /// `Sec-Fetch-Site` says another site started the request.
    #[error("Sec-Fetch-Site {0:?}: requests from other sites are refused")]
    CrossSite(String),
    /// Neither the cookie nor the URL carried the right secret.
    #[error("the per-launch secret is missing or wrong: open the URL aerodbctl console printed")]
    Secret,
}

impl Refusal {
    /// The HTTP status of this refusal: 403 for Host/Origin/site rules, 401 for the secret.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Refusal::Secret => http::StatusCode::UNAUTHORIZED,
            Refusal::Host(_) | Refusal::Origin(_) | Refusal::MissingOrigin | Refusal::CrossSite(_) => {
                http::StatusCode::FORBIDDEN
            }
        }
    }
}

/// The headers and URL parts the check reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen<'a> {
    /// Whether the method is POST (anything else the router refuses later).
    pub post: bool,
    /// The path, e.g. `/api/cluster`.
    pub path: &'a str,
    /// `Host`.
    pub host: Option<&'a str>,
    /// `Origin`.
    pub origin: Option<&'a str>,
    /// `Sec-Fetch-Site`.
    pub sec_fetch_site: Option<&'a str>,
    /// Every `Cookie` header value, joined by `; `.
    pub cookie: Option<&'a str>,
    /// The query string (without `?`).
    pub query: Option<&'a str>,
}

impl Expected {
    /// The rules for a console listening on `listen` with `secret`.
    pub fn new(listen: SocketAddr, secret: String) -> Self {
        let port = listen.port();
        let mut hosts = vec![listen.to_string()];
        hosts.push(format!("localhost:{port}"));
        Self { hosts, secret, cookie_name: format!("aerodb_console_{port}") }
    }

    /// The cookie's name.
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// The `Set-Cookie` value that carries the secret: HttpOnly (no script reads it),
    /// SameSite=Strict (no other site's request carries it), Path=/, a session cookie.
    pub fn set_cookie(&self) -> String {
        format!("{}={}; HttpOnly; SameSite=Strict; Path=/", self.cookie_name, self.secret)
    }

    /// The URL an operator opens once (`GET /?secret=…`).
    pub fn url(&self) -> String {
        format!("http://{}/?secret={}", self.hosts[0], self.secret)
    }

    /// Admits or refuses a request, checking the rules in the order of the module doc.
    pub fn check(&self, seen: &Seen<'_>) -> Result<Admit, Refusal> {
        let host = seen.host.unwrap_or_default();
        if !self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return Err(Refusal::Host(host.to_string()));
        }
        match seen.origin {
            Some(o) => {
                let same = self.hosts.iter().any(|h| o.eq_ignore_ascii_case(&format!("http://{h}")));
                if !same {
                    return Err(Refusal::Origin(o.to_string()));
                }
            }
            None if seen.post => return Err(Refusal::MissingOrigin),
            None => {}
        }
        if let Some(site) = seen.sec_fetch_site
            && site != "same-origin"
            && site != "none"
        {
            return Err(Refusal::CrossSite(site.to_string()));
        }
        let from_cookie = seen.cookie.unwrap_or_default().split(';').any(|pair| {
            let pair = pair.trim();
            pair.split_once('=').is_some_and(|(k, v)| k == self.cookie_name && same_secret(v, &self.secret))
        });
        if from_cookie {
            return Ok(Admit::Cookie);
        }
        let from_url = !seen.post
            && seen.path == "/"
            && seen
                .query
                .unwrap_or_default()
                .split('&')
                .any(|kv| kv.split_once('=').is_some_and(|(k, v)| k == "secret" && same_secret(v, &self.secret)));
        if from_url { Ok(Admit::UrlSecret) } else { Err(Refusal::Secret) }
    }
}

/// Compares in time independent of where the first difference is.
fn same_secret(given: &str, secret: &str) -> bool {
    let (a, b) = (given.as_bytes(), secret.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp() -> Expected {
        Expected::new("127.0.0.1:7710".parse().unwrap_or_else(|_| unreachable!()), "s3cr3t".into())
    }

    const COOKIE: &str = "other=1; aerodb_console_7710=s3cr3t";

    #[test]
    fn console_guard_table_host_origin_site_and_secret_in_order() {
        let e = exp();
        let ok = Seen {
            post: false,
            path: "/api/cluster",
            host: Some("127.0.0.1:7710"),
            origin: None,
            sec_fetch_site: None,
            cookie: Some(COOKIE),
            query: None,
        };
        let cases: Vec<(Seen<'_>, Result<Admit, Refusal>)> = vec![
            (ok, Ok(Admit::Cookie)),
            (Seen { host: Some("localhost:7710"), ..ok }, Ok(Admit::Cookie)),
            (Seen { host: Some("LOCALHOST:7710"), ..ok }, Ok(Admit::Cookie)),
            (Seen { host: Some("evil.example:7710"), ..ok }, Err(Refusal::Host("evil.example:7710".into()))),
            (Seen { host: Some("127.0.0.1:7711"), ..ok }, Err(Refusal::Host("127.0.0.1:7711".into()))),
            (Seen { host: None, ..ok }, Err(Refusal::Host(String::new()))),
            (Seen { origin: Some("http://127.0.0.1:7710"), ..ok }, Ok(Admit::Cookie)),
            (Seen { origin: Some("http://localhost:7710"), ..ok }, Ok(Admit::Cookie)),
            (Seen { origin: Some("http://evil.example"), ..ok }, Err(Refusal::Origin("http://evil.example".into()))),
            (Seen { origin: Some("null"), ..ok }, Err(Refusal::Origin("null".into()))),
            (
                Seen { origin: Some("https://127.0.0.1:7710"), ..ok },
                Err(Refusal::Origin("https://127.0.0.1:7710".into())),
            ),
            (Seen { post: true, ..ok }, Err(Refusal::MissingOrigin)),
            (Seen { post: true, origin: Some("http://127.0.0.1:7710"), ..ok }, Ok(Admit::Cookie)),
            (Seen { sec_fetch_site: Some("same-origin"), ..ok }, Ok(Admit::Cookie)),
            (Seen { sec_fetch_site: Some("none"), ..ok }, Ok(Admit::Cookie)),
            (Seen { sec_fetch_site: Some("cross-site"), ..ok }, Err(Refusal::CrossSite("cross-site".into()))),
            (Seen { sec_fetch_site: Some("same-site"), ..ok }, Err(Refusal::CrossSite("same-site".into()))),
            (Seen { cookie: None, ..ok }, Err(Refusal::Secret)),
            (Seen { cookie: Some("aerodb_console_7710=wrong!"), ..ok }, Err(Refusal::Secret)),
            (Seen { cookie: Some("aerodb_console_7711=s3cr3t"), ..ok }, Err(Refusal::Secret)),
            (Seen { cookie: None, path: "/", query: Some("secret=s3cr3t"), ..ok }, Ok(Admit::UrlSecret)),
            (Seen { cookie: None, path: "/", query: Some("secret=s3cr3"), ..ok }, Err(Refusal::Secret)),
            // The URL secret opens only the page, never an API call or a POST.
            (Seen { cookie: None, query: Some("secret=s3cr3t"), ..ok }, Err(Refusal::Secret)),
            (
                Seen {
                    cookie: None,
                    post: true,
                    path: "/",
                    origin: Some("http://127.0.0.1:7710"),
                    query: Some("secret=s3cr3t"),
                    ..ok
                },
                Err(Refusal::Secret),
            ),
            // Host is checked before the secret: a rebinding request learns nothing about it.
            (
                Seen { host: Some("evil.example:7710"), cookie: None, ..ok },
                Err(Refusal::Host("evil.example:7710".into())),
            ),
        ];
        for (i, (seen, want)) in cases.into_iter().enumerate() {
            assert_eq!(e.check(&seen), want, "case {i}: {seen:?}");
        }
    }

    #[test]
    fn console_cookie_is_http_only_same_site_strict_and_named_by_port() {
        assert_eq!(exp().set_cookie(), "aerodb_console_7710=s3cr3t; HttpOnly; SameSite=Strict; Path=/");
        assert_eq!(exp().url(), "http://127.0.0.1:7710/?secret=s3cr3t");
    }
}
