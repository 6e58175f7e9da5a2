//! Connections to PostgreSQL, each owned by a thread of its own, lent out
//! one per transaction.
//!
//! The sync client runs a small async runtime inside each call, which
//! panics on a thread that already drives one, and the store is read from
//! the HTTP layer's async workers. So a connection lives on its own thread
//! and a call is a closure sent to it, its answer sent back. The thread
//! also (re)connects: a connection found closed (the server restarted) is
//! replaced before the next call, which is how service resumes without a
//! Berth restart. Connections are plain or TLS as `Tls` says.

use std::sync::mpsc;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

type Job = Box<dyn FnOnce(Result<&mut Client, StoreError>) + Send>;

/// How connections are made: plain, or TLS checked against chosen roots.
#[derive(Clone)]
pub enum Tls {
    Plain,
    Rustls(MakeRustlsConnect),
}

impl Tls {
    fn connect(&self, c: &Config) -> Result<Client, postgres::Error> {
        match self {
            Tls::Plain => c.connect(NoTls),
            Tls::Rustls(t) => c.connect(t.clone()),
        }
    }
}

fn unreachable(e: &postgres::Error) -> StoreError {
    StoreError::Unavailable(format!("metadata database unreachable: {}", describe(e)))
}

/// What went wrong: the server's own words where it sent any ("db error"
/// alone says nothing), else the error and its causes (why a TLS
/// handshake failed, a connect was refused).
pub fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.code().code(), db.message());
    }
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// One connection's thread.
pub struct Conn {
    jobs: mpsc::Sender<Job>,
}

impl Conn {
    fn start(config: Config, tls: Tls, timeout: Duration) -> Result<Conn, StoreError> {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("berth-postgres".into())
            .spawn(move || {
                let mut client: Option<Client> = None;
                for job in rx {
                    if client.as_ref().map_or(true, Client::is_closed) {
                        client = None;
                        let mut c = config.clone();
                        c.connect_timeout(timeout);
                        match tls.connect(&c) {
                            Ok(cl) => client = Some(cl),
                            Err(e) => {
                                job(Err(unreachable(&e)));
                                continue;
                            }
                        }
                    }
                    job(Ok(client.as_mut().expect("connected")));
                }
            })
            .map_err(StoreError::from)?;
        Ok(Conn { jobs })
    }

    /// Run `f` on the connection and wait for its answer.
    pub fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |c| {
            let _ = tx.send(c.and_then(f));
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::db("a database connection thread stopped"))?;
        rx.recv()
            .map_err(|_| StoreError::db("a database connection thread stopped"))?
    }
}

/// At most `size` connections, lent one at a time.
pub struct Pool {
    config: Config,
    tls: Tls,
    timeout: Duration,
    size: usize,
    state: Mutex<(Vec<Conn>, usize)>,
    returned: Condvar,
}

impl Pool {
    pub fn new(config: Config, tls: Tls, timeout: Duration, size: usize) -> Pool {
        Pool {
            config,
            tls,
            timeout,
            size,
            state: Mutex::new((Vec::new(), 0)),
            returned: Condvar::new(),
        }
    }

    /// An idle connection, a new one while fewer than `size` exist, or the
    /// first one returned within the timeout.
    pub fn get(&self) -> Result<Conn, StoreError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(c) = st.0.pop() {
                return Ok(c);
            }
            if st.1 < self.size {
                st.1 += 1;
                drop(st);
                let c = Conn::start(self.config.clone(), self.tls.clone(), self.timeout);
                if c.is_err() {
                    self.state.lock().unwrap_or_else(|p| p.into_inner()).1 -= 1;
                }
                return c;
            }
            let (guard, waited) = self
                .returned
                .wait_timeout(st, self.timeout)
                .unwrap_or_else(|p| p.into_inner());
            st = guard;
            if waited.timed_out() && st.0.is_empty() {
                return Err(StoreError::Unavailable(
                    "every metadata database connection is busy; retry shortly".into(),
                ));
            }
        }
    }

    /// Give `c` back for the next transaction.
    pub fn put(&self, c: Conn) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .push(c);
        self.returned.notify_one();
    }
}
