//! Who the client is and how it reached us: its address (login throttling,
//! logs) and the origin it sees (redirect URIs). Forwarding headers are
//! believed only when the TCP peer is a configured trusted proxy; otherwise any
//! client could pick the address it is throttled under or the host it is
//! redirected to.

use std::net::IpAddr;

use actix_web::http::header;
use actix_web::HttpRequest;
use scribe_domain::config::Config;

fn trusted_proxies(config: &Config) -> &[String] {
    config
        .web_server
        .reverse_proxy
        .as_ref()
        .map_or(&[], |proxy| proxy.trusted_proxies.as_slice())
}

pub fn client_address(req: &HttpRequest, config: &Config) -> String {
    let Some(peer) = req.peer_addr().map(|addr| addr.ip()) else {
        return "unknown".to_owned();
    };
    let trusted = trusted_proxies(config);
    if !is_trusted(peer, trusted) {
        return peer.to_string();
    }
    // The rightmost entry that isn't one of our proxies is the real client.
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    forwarded
        .split(',')
        .rev()
        .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
        .find(|hop| !is_trusted(*hop, trusted))
        .unwrap_or(peer)
        .to_string()
}

/// `scheme://host[:port]` as the browser reaches this instance: the first hop of
/// `X-Forwarded-Proto` / `X-Forwarded-Host` when a trusted proxy sent them, else
/// this connection's own.
pub fn external_origin(req: &HttpRequest, config: &Config) -> String {
    let from_proxy = req
        .peer_addr()
        .is_some_and(|peer| is_trusted(peer.ip(), trusted_proxies(config)));
    let forwarded = |name: &str| {
        if !from_proxy {
            return None;
        }
        let value = req.headers().get(name)?.to_str().ok()?;
        let first = value.split(',').next()?.trim();
        (!first.is_empty()).then(|| first.to_owned())
    };
    let scheme = forwarded("x-forwarded-proto").unwrap_or_else(|| {
        if req.app_config().secure() {
            "https".to_owned()
        } else {
            "http".to_owned()
        }
    });
    let host = forwarded("x-forwarded-host")
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_else(|| req.app_config().host().to_owned());
    format!("{scheme}://{host}")
}

/// Entries are addresses, networks (`172.16.0.0/12`, `fd00::/8`) or `*`.
fn is_trusted(address: IpAddr, trusted: &[String]) -> bool {
    trusted.iter().any(|entry| {
        let entry = entry.trim();
        entry == "*" || in_network(address, entry)
    })
}

fn in_network(address: IpAddr, network: &str) -> bool {
    let (base, prefix) = network.split_once('/').unwrap_or((network, ""));
    let Ok(base) = base.parse::<IpAddr>() else {
        return false;
    };
    match (base, address) {
        (IpAddr::V4(base), IpAddr::V4(address)) => matches_prefix(
            u32::from(base).into(),
            u32::from(address).into(),
            32,
            prefix,
        ),
        (IpAddr::V6(base), IpAddr::V6(address)) => {
            matches_prefix(u128::from(base), u128::from(address), 128, prefix)
        }
        _ => false,
    }
}

/// Whether the first `prefix` of `width` bits agree (all of them without a prefix).
fn matches_prefix(base: u128, address: u128, width: u32, prefix: &str) -> bool {
    let bits = if prefix.is_empty() {
        width
    } else {
        match prefix.parse::<u32>() {
            Ok(bits) if bits <= width => bits,
            _ => return false,
        }
    };
    if bits == 0 {
        return true;
    }
    let shift = width - bits;
    (base >> shift) == (address >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_proxies_are_trusted() {
        let trusted = vec!["10.0.0.1".to_owned()];
        assert!(is_trusted(
            "10.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            &trusted
        ));
        assert!(!is_trusted(IpAddr::from([10, 0, 0, 2]), &trusted));
        assert!(is_trusted(IpAddr::from([1, 2, 3, 4]), &["*".to_owned()]));
        let networks = vec!["172.16.0.0/12".to_owned(), "fd00::/8".to_owned()];
        assert!(is_trusted(IpAddr::from([172, 31, 255, 1]), &networks));
        assert!(!is_trusted(IpAddr::from([172, 32, 0, 1]), &networks));
        assert!(is_trusted(
            IpAddr::from([0xfd12, 0, 0, 0, 0, 0, 0, 1]),
            &networks
        ));
        assert!(!is_trusted(
            IpAddr::from([0xfe80, 0, 0, 0, 0, 0, 0, 1]),
            &networks
        ));
        assert!(!is_trusted(
            IpAddr::from([10, 0, 0, 1]),
            &["10.0.0.0/33".to_owned()]
        ));
    }

    #[test]
    fn forwarded_origins_are_believed_only_from_trusted_proxies() {
        let config = |trusted: &[&str]| {
            let mut config = scribe_domain::config::parse_str(
                scribe_domain::config::EMBEDDED_DEFAULT,
                Vec::new(),
            )
            .unwrap_or_else(|e| panic!("the embedded default loads: {e}"))
            .config;
            config.web_server.reverse_proxy = Some(scribe_domain::config::ReverseProxyConfig {
                trusted_proxies: trusted.iter().map(|s| (*s).to_owned()).collect(),
                root_path: None,
            });
            config
        };
        let request = || {
            actix_web::test::TestRequest::default()
                .peer_addr("10.0.0.1:4000".parse().unwrap_or_else(|_| unreachable!()))
                .insert_header((header::HOST, "internal:5000"))
                .insert_header(("x-forwarded-host", "scribe.example.org, proxy"))
                .insert_header(("x-forwarded-proto", "https"))
                .to_http_request()
        };
        assert_eq!(
            external_origin(&request(), &config(&["10.0.0.1"])),
            "https://scribe.example.org"
        );
        assert_eq!(
            external_origin(&request(), &config(&["10.0.0.2"])),
            "http://internal:5000"
        );
    }
}
