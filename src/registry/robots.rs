//! Robot accounts as a service: create, list, revoke, log in. Records live
//! in the metadata database; they are read once and kept in memory, so a
//! robot's login costs a hash and a map lookup, and a revocation holds at
//! once for its logins and for the tokens it was given. With the metadata
//! shared by several nodes (PostgreSQL), the map is read again once it is
//! [`SHARED_TTL`] old, so a robot revoked on one node stops on every node
//! within that time.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use super::{Error, Registry, Result};
use crate::auth::robots::{NewRobot, Robot, PREFIX};
use crate::auth::Caller;
use crate::clock::unix_now;

/// How long nodes sharing the metadata keep the map before reading it again.
pub const SHARED_TTL: Duration = Duration::from_secs(2);

#[derive(Default)]
pub struct Robots {
    by_name: RwLock<Option<HashMap<String, Robot>>>,
    /// When the map was read.
    read_at: RwLock<Option<Instant>>,
}

impl Registry {
    fn robots_loaded(&self) -> Result<()> {
        let fresh = match *self.robots.read_at.read().expect("robots") {
            Some(at) => !self.store.shared() || at.elapsed() < SHARED_TTL,
            None => false,
        };
        if fresh {
            return Ok(());
        }
        let mut map = HashMap::new();
        for (name, bytes) in self.store.robots()? {
            match serde_json::from_slice::<Robot>(&bytes) {
                Ok(r) => {
                    map.insert(name, r);
                }
                Err(e) => {
                    tracing::error!(robot = %name, error = %e, "unreadable robot record skipped")
                }
            }
        }
        *self.robots.by_name.write().expect("robots") = Some(map);
        *self.robots.read_at.write().expect("robots") = Some(Instant::now());
        Ok(())
    }

    fn with_robots<T>(&self, f: impl FnOnce(&HashMap<String, Robot>) -> T) -> Result<T> {
        self.robots_loaded()?;
        Ok(f(self
            .robots
            .by_name
            .read()
            .expect("robots")
            .as_ref()
            .expect("loaded")))
    }

    /// Create a robot; answers it and its secret (shown once). A name in
    /// use by an active robot is refused; a revoked or expired one's name
    /// may be used again.
    pub fn robot_create(&self, new: &NewRobot) -> Result<(Robot, String)> {
        new.check().map_err(Error::Unsupported)?;
        let now = unix_now();
        if self.with_robots(|m| m.get(&new.name).is_some_and(|r| r.active(now)))? {
            return Err(Error::Unsupported(format!(
                "robot {PREFIX}{} exists; revoke it first",
                new.name
            )));
        }
        let (robot, secret) = new.create(now);
        self.robot_store(&robot)?;
        Ok((robot, secret))
    }

    fn robot_store(&self, robot: &Robot) -> Result<()> {
        let bytes = serde_json::to_vec(robot).expect("a robot serialises");
        self.store.put_robot(&robot.name, &bytes)?;
        if let Some(m) = self.robots.by_name.write().expect("robots").as_mut() {
            m.insert(robot.name.clone(), robot.clone());
        }
        Ok(())
    }

    /// Every robot, revoked and expired ones too, by name.
    pub fn robot_list(&self) -> Result<Vec<Robot>> {
        let mut all = self.with_robots(|m| m.values().cloned().collect::<Vec<_>>())?;
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// Revoke robot `name` (with or without `robot$`); false if unknown.
    pub fn robot_revoke(&self, name: &str) -> Result<bool> {
        let name = name.strip_prefix(PREFIX).unwrap_or(name);
        let Some(mut robot) = self.with_robots(|m| m.get(name).cloned())? else {
            return Ok(false);
        };
        if robot.revoked.is_none() {
            robot.revoked = Some(unix_now());
            self.robot_store(&robot)?;
        }
        Ok(true)
    }

    /// The caller `user` (`robot$name`) logs in as with `secret`, if any.
    pub fn robot_login(&self, user: &str, secret: &str) -> Result<Option<Caller>> {
        let Some(name) = user.strip_prefix(PREFIX) else {
            return Ok(None);
        };
        let now = unix_now();
        self.with_robots(|m| {
            m.get(name)
                .filter(|r| r.accepts(secret, now))
                .map(Robot::caller)
        })
    }

    /// Is `user` a robot that may still act (tokens it was given stop
    /// working when it is revoked or expires)? True for non-robot names.
    pub fn robot_active(&self, user: &str) -> Result<bool> {
        let Some(name) = user.strip_prefix(PREFIX) else {
            return Ok(true);
        };
        let now = unix_now();
        self.with_robots(|m| m.get(name).is_some_and(|r| r.active(now)))
    }
}
