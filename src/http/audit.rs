//! The audit trail: every login, token issue and refusal as one log line
//! (target `berth::audit`, client text escaped) and a count in
//! `berth_auth_events_total{event,method}`. Clients send Basic credentials
//! with every request: a successful one is counted each time but written
//! once per user and address every five minutes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::logsafe::escaped;
use super::State;

const LOGIN_LINE_EVERY: Duration = Duration::from_secs(300);
const RECENT_MAX: usize = 10_000;

/// When each user last had a login line written, by address.
#[derive(Default)]
pub struct Recent(Mutex<HashMap<(String, Option<IpAddr>), Instant>>);

impl Recent {
    /// Should this successful login be written (none in the last while)?
    fn first_in_a_while(&self, user: &str, ip: Option<IpAddr>) -> bool {
        let mut m = self.0.lock().expect("recent logins");
        let key = (user.to_string(), ip);
        if m.get(&key).is_some_and(|t| t.elapsed() < LOGIN_LINE_EVERY) {
            return false;
        }
        if m.len() >= RECENT_MAX {
            m.clear();
        }
        m.insert(key, Instant::now());
        true
    }
}

/// A successful password login: counted, and written when it is the
/// first from that user and address in five minutes.
pub fn login(state: &State, method: &'static str, user: &str, ip: Option<IpAddr>, peer: &str) {
    if state.recent_logins.first_in_a_while(user, ip) {
        record(state, "login", method, user, peer, "");
    } else {
        count(state, "login", method);
    }
}

fn count(state: &State, event: &'static str, method: &'static str) {
    state
        .metrics
        .auth_events
        .get_or_create(&vec![
            ("event".to_string(), event.to_string()),
            ("method".to_string(), method.to_string()),
        ])
        .inc();
}

/// One audit event. `user` and `detail` may come from the client.
pub fn record(
    state: &State,
    event: &'static str,
    method: &'static str,
    user: &str,
    peer: &str,
    detail: &str,
) {
    count(state, event, method);
    let (user, detail) = (escaped(user), escaped(detail));
    match event {
        "login" | "token_issued" => {
            tracing::info!(target: "berth::audit", event, method, user = %user, peer, detail = %detail, "audit")
        }
        _ => {
            tracing::warn!(target: "berth::audit", event, method, user = %user, peer, detail = %detail, "audit")
        }
    }
}
