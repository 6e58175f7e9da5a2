//! Page sessions: a form login sets a cookie naming a session held in
//! memory (256 random bits; HttpOnly, SameSite=Strict, Path=/ui), so a
//! browser is logged in without sending a password with each page. Sessions
//! end after 8 idle hours, at logout, or when the server restarts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::auth::Caller;

pub const COOKIE: &str = "berth_session";
const IDLE: Duration = Duration::from_secs(8 * 3600);
const MAX: usize = 10_000;

#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, (Caller, Instant)>>);

impl Sessions {
    /// A new session for `caller`; its id for the cookie.
    pub fn open(&self, caller: Caller) -> String {
        let id: String = rand::random::<[u8; 32]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut m = self.0.lock().expect("sessions");
        if m.len() >= MAX {
            m.retain(|_, (_, at)| at.elapsed() < IDLE);
            if m.len() >= MAX {
                // the oldest go first
                let mut by_age: Vec<(String, Instant)> =
                    m.iter().map(|(k, v)| (k.clone(), v.1)).collect();
                by_age.sort_by_key(|e| e.1);
                for (k, _) in by_age.into_iter().take(MAX / 10) {
                    m.remove(&k);
                }
            }
        }
        m.insert(id.clone(), (caller, Instant::now()));
        id
    }

    /// The caller of session `id`, if it is open; its idle time restarts.
    pub fn get(&self, id: &str) -> Option<Caller> {
        let mut m = self.0.lock().expect("sessions");
        match m.get_mut(id) {
            Some((c, at)) if at.elapsed() < IDLE => {
                *at = Instant::now();
                Some(c.clone())
            }
            Some(_) => {
                m.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn close(&self, id: &str) {
        self.0.lock().expect("sessions").remove(id);
    }
}
