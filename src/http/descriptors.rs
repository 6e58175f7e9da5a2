//! File descriptors are the resource a hostile client exhausts first: each
//! connection holds a socket, and a request that reads a blob or writes an
//! upload holds a file besides. At start the soft open-file limit is raised
//! to the hard one (as Go programs do), and the limits that default to
//! "derived" are set so that every connection can hold its file with room
//! left for the database, its log and the listeners.

/// Descriptors kept aside for the database, redo log, listeners, epoll,
/// standard streams, a scrub or GC walking directories.
const RESERVE: u64 = 64;

/// Sessions allowed at most when derived, whatever the limit (each live
/// one holds its hash state, a few KiB).
const MAX_DERIVED_SESSIONS: u64 = 16384;

/// Raise the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit
/// in effect afterwards (None where it cannot be read).
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit write and read only `lim`.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return None;
            }
            if lim.rlim_cur < lim.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    lim.rlim_cur = lim.rlim_max;
                }
            }
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
        Some(lim.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    None
}

/// The budget for an open-file limit of `nofile` descriptors shared by
/// `workers` HTTP workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Upload sessions in the whole registry (`limits.max_sessions` = 0).
    pub sessions: usize,
    /// Connections per worker that the limit can carry, each with a file.
    pub connections_per_worker: usize,
}

pub fn budget(nofile: u64, workers: usize) -> Budget {
    let usable = nofile.saturating_sub(RESERVE).max(RESERVE);
    // a connection: its socket, and the file a request of it may hold
    let connections = usable / 2;
    Budget {
        sessions: connections.clamp(16, MAX_DERIVED_SESSIONS) as usize,
        connections_per_worker: (connections / workers.max(1) as u64).max(8) as usize,
    }
}

/// Set the limits that default to "derived from the open-file limit"
/// (after raising it), and lower `limits.max_connections` to what the
/// limit carries. Call before the store opens and the server binds.
pub fn fit(config: &mut crate::config::Config) {
    let Some(nofile) = raise_open_file_limit() else {
        return;
    };
    let b = budget(nofile, config.http_workers());
    let limits = &mut config.limits;
    if limits.max_sessions == 0 {
        limits.max_sessions = b.sessions;
    }
    if limits.max_connections > b.connections_per_worker {
        tracing::warn!(
            configured = limits.max_connections,
            allowed = b.connections_per_worker,
            open_file_limit = nofile,
            "limits.max_connections lowered to what the open-file limit carries"
        );
        limits.max_connections = b.connections_per_worker;
    }
    tracing::info!(
        open_file_limit = nofile,
        max_sessions = limits.max_sessions,
        max_connections_per_worker = limits.max_connections,
        "descriptor budget"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_from_the_limit() {
        let b = budget(1024, 2);
        assert_eq!(b.sessions, 480);
        assert_eq!(b.connections_per_worker, 240);
        // descriptors for every connection and its file, plus the reserve
        assert!(b.connections_per_worker as u64 * 2 * 2 + RESERVE <= 1024);
        assert_eq!(budget(1 << 20, 2).sessions, 16384);
        assert!(budget(20, 4).connections_per_worker >= 8);
    }
}
