//! Throttling of password guessing, per client address and per user.
//!
//! * An address that sends [`FREE_PER_ADDRESS`] wrong credentials in a row
//!   is refused (429 with `Retry-After`) before any password is checked,
//!   for a wait that doubles with each further failure (2 s, 4 s, ... up to
//!   [`MAX_WAIT`]). A success from it starts it over.
//! * A user whose password is guessed from many addresses (more than
//!   [`FREE_PER_USER`] failures) is refused the same way, except from the
//!   addresses where that user logged in successfully in the last day: the
//!   user at their usual machines is not slowed down by an attack from
//!   elsewhere; from a new address they wait like the attacker.
//!
//! Failures are forgotten after [`FORGET_AFTER`] without one. Memory stays
//! bounded: at most [`MAX_ENTRIES`] addresses and users are tracked, IPv6
//! addresses by their /64 (one host holds a whole /64).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures from one address before its requests are refused.
pub const FREE_PER_ADDRESS: u32 = 5;
/// Failures for one user, from anywhere, before unknown addresses are refused.
pub const FREE_PER_USER: u32 = 10;
/// The longest wait.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// Failures older than this (with none since) are forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(900);
/// A successful login from an address vouches for it this long.
const KNOWN_FOR: Duration = Duration::from_secs(24 * 3600);
/// Addresses remembered per user as known good.
const KNOWN_PER_USER: usize = 8;
/// Tracked addresses, and tracked users, at most.
const MAX_ENTRIES: usize = 65536;

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last: Instant,
    /// Refused until then.
    until: Option<Instant>,
}

impl Failures {
    fn new(now: Instant) -> Failures {
        Failures {
            count: 0,
            last: now,
            until: None,
        }
    }

    fn stale(&self, now: Instant) -> bool {
        now.duration_since(self.last) >= FORGET_AFTER && self.wait(now).is_none()
    }

    /// Count a failure; past `free` of them, start a wait that doubles.
    fn add(&mut self, now: Instant, free: u32) {
        if self.stale(now) {
            *self = Failures::new(now);
        }
        self.count += 1;
        self.last = now;
        if self.count >= free {
            let doublings = (self.count - free).min(16);
            let wait = Duration::from_secs(2 << doublings).min(MAX_WAIT);
            self.until = Some(now + wait);
        }
    }

    fn wait(&self, now: Instant) -> Option<Duration> {
        self.until
            .filter(|&u| u > now)
            .map(|u| u.duration_since(now))
    }
}

#[derive(Default)]
struct User {
    failures: Option<Failures>,
    /// Addresses this user logged in from, and when.
    known: Vec<(Key, Instant)>,
}

/// An address as tracked: IPv4 whole, IPv6 by its /64.
type Key = [u8; 16];

fn key(ip: IpAddr) -> Key {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => {
            let mut k = v6.octets();
            k[8..].fill(0);
            k
        }
    }
}

#[derive(Default)]
struct Book {
    addresses: HashMap<Key, Failures>,
    users: HashMap<String, User>,
}

#[derive(Default)]
pub struct Throttle {
    book: Mutex<Book>,
}

impl Throttle {
    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long `ip` must wait before trying `user`'s password again, if it
    /// must: ask before checking any credentials.
    pub fn wait(&self, ip: IpAddr, user: &str) -> Option<Duration> {
        let now = Instant::now();
        let k = key(ip);
        let b = self.book();
        let by_address = b.addresses.get(&k).and_then(|f| f.wait(now));
        let by_user = b.users.get(user).and_then(|u| {
            let known = u
                .known
                .iter()
                .any(|(a, at)| *a == k && now.duration_since(*at) < KNOWN_FOR);
            match known {
                true => None,
                false => u.failures.and_then(|f| f.wait(now)),
            }
        });
        by_address.max(by_user)
    }

    /// Wrong credentials for `user` from `ip`.
    pub fn failed(&self, ip: IpAddr, user: &str) {
        let now = Instant::now();
        let mut b = self.book();
        bound(&mut b.addresses, |f| f.stale(now));
        b.addresses
            .entry(key(ip))
            .or_insert_with(|| Failures::new(now))
            .add(now, FREE_PER_ADDRESS);
        if !b.users.contains_key(user) {
            bound(&mut b.users, |u| {
                u.failures.iter().all(|f| f.stale(now))
                    && u.known
                        .iter()
                        .all(|(_, at)| now.duration_since(*at) >= KNOWN_FOR)
            });
        }
        b.users
            .entry(user.to_string())
            .or_default()
            .failures
            .get_or_insert_with(|| Failures::new(now))
            .add(now, FREE_PER_USER);
    }

    /// Valid credentials for `user` from `ip`: the address starts over and
    /// becomes one of the user's known addresses.
    pub fn succeeded(&self, ip: IpAddr, user: &str) {
        let now = Instant::now();
        let k = key(ip);
        let mut b = self.book();
        if !b.addresses.is_empty() {
            b.addresses.remove(&k);
        }
        // only valid users get here, so this grows with the user base
        let u = b.users.entry(user.to_string()).or_default();
        if let Some((_, at)) = u.known.iter_mut().find(|(a, _)| *a == k) {
            *at = now;
            return;
        }
        if u.known.len() >= KNOWN_PER_USER {
            u.known.remove(0);
        }
        u.known.push((k, now));
    }

    /// Tracked addresses and users (for tests and metrics).
    pub fn tracked(&self) -> (usize, usize) {
        let b = self.book();
        (b.addresses.len(), b.users.len())
    }
}

/// Keep `map` under [`MAX_ENTRIES`]: drop what `stale` says first, then
/// half of the rest (an attacker who fills the table loses its own state
/// as much as anyone's).
fn bound<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>, stale: impl Fn(&V) -> bool) {
    if map.len() < MAX_ENTRIES {
        return;
    }
    map.retain(|_, v| !stale(v));
    if map.len() >= MAX_ENTRIES {
        let mut n = 0;
        map.retain(|_, _| {
            n += 1;
            n <= MAX_ENTRIES / 2
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_waits_after_its_free_failures() {
        let t = Throttle::default();
        let a = ip("10.0.0.1");
        for _ in 0..FREE_PER_ADDRESS - 1 {
            assert_eq!(t.wait(a, "alice"), None);
            t.failed(a, "alice");
        }
        t.failed(a, "bob");
        let w = t.wait(a, "carol").expect("refused, whatever the user");
        assert!(w <= Duration::from_secs(2) && w > Duration::ZERO, "{w:?}");
        // another address is not slowed
        assert_eq!(t.wait(ip("10.0.0.2"), "alice"), None);
        // each further failure doubles the wait
        t.failed(a, "alice");
        assert!(t.wait(a, "x").unwrap() > Duration::from_millis(3500));
        // a success starts the address over
        t.succeeded(a, "alice");
        assert_eq!(t.wait(a, "carol"), None);
    }

    #[test]
    fn a_guessed_user_is_refused_only_from_unknown_addresses() {
        let t = Throttle::default();
        let home = ip("10.1.0.1");
        t.failed(home, "alice");
        t.succeeded(home, "alice");
        for i in 0..FREE_PER_USER {
            t.failed(ip(&format!("10.2.0.{i}")), "alice");
        }
        assert!(t.wait(ip("10.3.0.1"), "alice").is_some());
        assert_eq!(t.wait(home, "alice"), None, "known address");
        assert_eq!(t.wait(ip("10.3.0.1"), "bob"), None, "other users");
    }

    #[test]
    fn ipv6_counts_by_64_and_memory_is_bounded() {
        let t = Throttle::default();
        for i in 0..FREE_PER_ADDRESS {
            t.failed(ip(&format!("2001:db8::{i:x}")), &format!("u{i}"));
        }
        assert!(t.wait(ip("2001:db8::ffff"), "x").is_some());
        for i in 0..MAX_ENTRIES + 100 {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(i as u32 + 1));
            t.failed(a, "u");
        }
        let (addresses, _) = t.tracked();
        assert!(addresses <= MAX_ENTRIES, "{addresses}");
    }
}
