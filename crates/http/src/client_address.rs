//! The client's address, for login throttling and logs. Forwarding headers are
//! believed only when the TCP peer is a configured trusted proxy; otherwise any
//! client could pick the address it is throttled under.

use std::net::IpAddr;

use actix_web::HttpRequest;
use scribe_domain::config::Config;

pub fn client_address(req: &HttpRequest, config: &Config) -> String {
    let Some(peer) = req.peer_addr().map(|addr| addr.ip()) else {
        return "unknown".to_owned();
    };
    let trusted: &[String] = config
        .web_server
        .reverse_proxy
        .as_ref()
        .map_or(&[], |proxy| proxy.trusted_proxies.as_slice());
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

fn is_trusted(address: IpAddr, trusted: &[String]) -> bool {
    trusted.iter().any(|entry| {
        let entry = entry.trim();
        entry == "*" || entry.parse::<IpAddr>().is_ok_and(|ip| ip == address)
    })
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
    }
}
