//! The PostgreSQL metadata engine (`[metadata] engine = "postgres"`): the
//! same key-value contract as redb, in one table shared by every node.
//! The only module that names PostgreSQL.
//!
//! How it keeps the contract (`kv/mod.rs`):
//! * one write transaction at a time, across every node: a write begins by
//!   taking one transaction-scoped advisory lock, so a read-check-write in
//!   it is a compare-and-swap wherever the other writers run (the merge of
//!   pushers on different nodes); the lock goes with the commit or abort;
//! * readers see a snapshot: `REPEATABLE READ, READ ONLY`;
//! * `commit` returns once PostgreSQL has made it durable
//!   (`synchronous_commit`, on by default: keep it on);
//! * a server that cannot be reached, or restarts, fails requests as
//!   `Unavailable` (503 + Retry-After); a closed connection is replaced
//!   before its next use, so service resumes without a Berth restart.
//!
//! Scans go in key order by `bytea` comparison (bytewise, as redb's), in
//! pages, so a scan of a large table holds a page in memory, not the table.
//! Each connection lives on a thread of its own (`conn.rs`).

mod conn;

use std::sync::Arc;
use std::time::Duration;

use postgres::types::ToSql;

use super::{Engine, Entry, ReadTx, Reader, Table, WriteTx, Writer};
use crate::store::StoreError;
use conn::{Conn, Pool, Tls};

/// The advisory lock every write transaction holds ("berth" in ASCII).
const WRITE_LOCK: i64 = 0x0062_6572_7468;

/// Rows fetched per round trip in a full scan.
const PAGE: i64 = 1000;

/// Connections per node.
const POOL_SIZE: usize = 32;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS berth_kv (
    tbl smallint NOT NULL,
    k bytea NOT NULL,
    v bytea NOT NULL,
    PRIMARY KEY (tbl, k)
)";

/// Where the engine connects, with a password kept out of the URL.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// `postgres://user@host:port/db` (or a key=value string).
    pub url: String,
    pub password: Option<String>,
    /// How long a request waits for a connection or a refused connect.
    pub timeout: Duration,
    /// A PEM file of the CA certificates the server's certificate must
    /// chain to: connections are then TLS only (`sslmode=require`), and
    /// the certificate must name the host the URL gives.
    pub ca_file: Option<String>,
}

pub struct Postgres {
    pool: Arc<Pool>,
}

/// A server's refusal (SQL state) is an engine error; anything else (a
/// closed connection, a refused connect) means the server is away.
fn pg_err(e: postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(_) => StoreError::db(conn::describe(&e)),
        None => StoreError::Unavailable(format!(
            "metadata database unreachable: {}",
            conn::describe(&e)
        )),
    }
}

impl Postgres {
    /// Connect and create the table if it is missing.
    pub fn open(o: &PostgresOptions) -> Result<Postgres, StoreError> {
        let mut config: postgres::Config = o
            .url
            .parse()
            .map_err(|e| StoreError::db(format!("metadata.url: {e}")))?;
        if let Some(p) = &o.password {
            config.password(p);
        }
        let tls = tls(&mut config, o.ca_file.as_deref())?;
        let pg = Postgres {
            pool: Arc::new(Pool::new(config, tls, o.timeout, POOL_SIZE)),
        };
        // under the write lock: nodes starting at once on a new database
        // would race in CREATE TABLE IF NOT EXISTS, which PostgreSQL does
        // not make safe (a unique violation in its catalog)
        let c = pg.pool.get()?;
        let create = format!("BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK}); {SCHEMA}; COMMIT");
        let made = c.call(move |c| c.batch_execute(&create).map_err(pg_err));
        pg.pool.put(c);
        made?;
        Ok(pg)
    }

    /// A transaction begun with `begin` on a lent connection.
    fn begin(&self, begin: String) -> Result<PgTx, StoreError> {
        let c = self.pool.get()?;
        match c.call(move |c| c.batch_execute(&begin).map_err(pg_err)) {
            Ok(()) => Ok(PgTx {
                conn: Some(c),
                pool: self.pool.clone(),
            }),
            Err(e) => {
                self.pool.put(c);
                Err(e)
            }
        }
    }
}

/// TLS as the options ask: with a CA file, always, checked against it;
/// with `sslmode=require` in the URL and no CA file, checked against the
/// web's roots; otherwise plain (the client's `prefer` then means plain).
fn tls(config: &mut postgres::Config, ca_file: Option<&str>) -> Result<Tls, StoreError> {
    use postgres::config::SslMode;
    let invalid = |m: String| StoreError::db(format!("metadata: {m}"));
    let roots = match (ca_file, config.get_ssl_mode()) {
        (Some(_), SslMode::Disable) => {
            return Err(invalid(
                "ca_file is set and url says sslmode=disable: drop one".into(),
            ))
        }
        (Some(f), _) => crate::trust::trusting(f).map_err(|e| invalid(format!("ca_file {e}")))?,
        (None, SslMode::Require) => web_roots().map_err(invalid)?,
        (None, _) => return Ok(Tls::Plain),
    };
    config.ssl_mode(SslMode::Require);
    Ok(Tls::Rustls(tokio_postgres_rustls::MakeRustlsConnect::new(
        roots,
    )))
}

#[cfg(feature = "tls")]
fn web_roots() -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    crate::trust::client_config(roots)
}

#[cfg(not(feature = "tls"))]
fn web_roots() -> Result<rustls::ClientConfig, String> {
    Err("sslmode=require without ca_file needs the web's roots (the \"tls\" build feature)".into())
}

impl Engine for Postgres {
    fn read(&self) -> Result<ReadTx, StoreError> {
        Ok(Box::new(self.begin(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY".into(),
        )?))
    }

    fn write(&self) -> Result<WriteTx, StoreError> {
        Ok(Box::new(self.begin(format!(
            "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock({WRITE_LOCK})"
        ))?))
    }

    /// PostgreSQL reclaims space itself (autovacuum).
    fn compact(&self) -> Result<bool, StoreError> {
        Ok(false)
    }
}

/// A transaction on a lent connection (read or write: the `BEGIN` said
/// which). Rolled back when dropped unfinished; the connection goes back
/// to the pool either way.
struct PgTx {
    conn: Option<Conn>,
    pool: Arc<Pool>,
}

impl PgTx {
    /// Run `run` on the connection with `params` as the client wants them
    /// (owned here, so they can be sent to the connection's thread).
    fn with_params<T: Send + 'static>(
        &self,
        params: Vec<Box<dyn ToSql + Sync + Send>>,
        run: impl FnOnce(&mut postgres::Client, &[&(dyn ToSql + Sync)]) -> Result<T, postgres::Error>
            + Send
            + 'static,
    ) -> Result<T, StoreError> {
        let c = self
            .conn
            .as_ref()
            .ok_or_else(|| StoreError::db("transaction already finished"))?;
        c.call(move |c| {
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
            run(c, &refs).map_err(pg_err)
        })
    }

    fn query(
        &self,
        sql: String,
        params: Vec<Box<dyn ToSql + Sync + Send>>,
    ) -> Result<Vec<postgres::Row>, StoreError> {
        self.with_params(params, move |c, p| c.query(sql.as_str(), p))
    }

    fn execute(
        &self,
        sql: &'static str,
        params: Vec<Box<dyn ToSql + Sync + Send>>,
    ) -> Result<u64, StoreError> {
        self.with_params(params, move |c, p| c.execute(sql, p))
    }

    /// Up to `limit` entries of `table` under `prefix` after `after`.
    fn page(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: i64,
    ) -> Result<Vec<Entry>, StoreError> {
        let tbl = i16::from(table.id());
        // keys start with the prefix: k >= prefix (or > after), and k < its
        // successor (none when the prefix is empty or all 0xff bytes)
        let strict = after.is_some_and(|a| a >= prefix);
        let from = match after {
            Some(a) if strict => a.to_vec(),
            _ => prefix.to_vec(),
        };
        let op = if strict { ">" } else { ">=" };
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(tbl), Box::new(from)];
        let bound = match successor(prefix) {
            Some(u) => {
                params.push(Box::new(u));
                "AND k < $3 ORDER BY k LIMIT $4"
            }
            None => "ORDER BY k LIMIT $3",
        };
        params.push(Box::new(limit));
        let sql = format!("SELECT k, v FROM berth_kv WHERE tbl = $1 AND k {op} $2 {bound}");
        Ok(self
            .query(sql, params)?
            .into_iter()
            .map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, Vec<u8>>(1)))
            .collect())
    }

    fn for_each_after(
        &self,
        table: Table,
        prefix: &[u8],
        mut after: Option<Vec<u8>>,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        loop {
            let rows = self.page(table, prefix, after.as_deref(), PAGE)?;
            let full = rows.len() as i64 == PAGE;
            for (k, v) in &rows {
                if !f(k, v) {
                    return Ok(());
                }
            }
            match (full, rows.last()) {
                (true, Some((k, _))) => after = Some(k.clone()),
                _ => return Ok(()),
            }
        }
    }

    /// End the transaction with `sql` and give the connection back.
    fn finish(&mut self, sql: &'static str) -> Result<(), StoreError> {
        let c = self
            .conn
            .take()
            .ok_or_else(|| StoreError::db("transaction already finished"))?;
        let done = c.call(move |c| c.batch_execute(sql).map_err(pg_err));
        self.pool.put(c);
        done
    }
}

/// The smallest key greater than every key starting with `prefix`.
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last < 0xff {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

impl Drop for PgTx {
    fn drop(&mut self) {
        if self.conn.is_some() {
            // a connection that cannot roll back is closed, and its thread
            // connects afresh for the next call
            let _ = self.finish("ROLLBACK");
        }
    }
}

impl Reader for PgTx {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let rows = self.query(
            "SELECT v FROM berth_kv WHERE tbl = $1 AND k = $2".into(),
            vec![Box::new(i16::from(table.id())), Box::new(key.to_vec())],
        )?;
        Ok(rows.into_iter().next().map(|r| r.get(0)))
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        if limit <= PAGE as usize {
            return self.page(table, prefix, after, limit as i64);
        }
        let mut out = Vec::new();
        self.for_each_after(table, prefix, after.map(<[u8]>::to_vec), &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            out.len() < limit
        })?;
        Ok(out)
    }

    fn for_each(
        &self,
        table: Table,
        prefix: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.for_each_after(table, prefix, None, f)
    }
}

impl Writer for PgTx {
    fn insert(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO berth_kv (tbl, k, v) VALUES ($1, $2, $3) \
             ON CONFLICT (tbl, k) DO UPDATE SET v = excluded.v",
            vec![
                Box::new(i16::from(table.id())),
                Box::new(key.to_vec()),
                Box::new(value.to_vec()),
            ],
        )?;
        Ok(())
    }

    fn remove(&mut self, table: Table, key: &[u8]) -> Result<bool, StoreError> {
        let n = self.execute(
            "DELETE FROM berth_kv WHERE tbl = $1 AND k = $2",
            vec![Box::new(i16::from(table.id())), Box::new(key.to_vec())],
        )?;
        Ok(n > 0)
    }

    fn delete_table(&mut self, table: Table) -> Result<bool, StoreError> {
        let n = self.execute(
            "DELETE FROM berth_kv WHERE tbl = $1",
            vec![Box::new(i16::from(table.id()))],
        )?;
        Ok(n > 0)
    }

    fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        self.finish("COMMIT")
    }
}

#[cfg(test)]
mod tests {
    use super::{successor, tls, Tls};

    #[test]
    fn a_ca_file_means_tls_and_contradicting_the_url_is_refused() {
        let cfg = |u: &str| u.parse::<postgres::Config>().unwrap();
        let plain = tls(&mut cfg("postgres://berth@db/berth"), None).unwrap();
        assert!(matches!(plain, Tls::Plain));
        let e = tls(
            &mut cfg("postgres://berth@db/berth?sslmode=disable"),
            Some("/etc/berth/db-ca.pem"),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("sslmode=disable"), "{e}");
        // a CA file that holds no certificate is an error, not "trust none"
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "").unwrap();
        let mut c = cfg("postgres://berth@db/berth");
        assert!(tls(&mut c, Some(empty.to_str().unwrap())).is_err());
        #[cfg(feature = "tls")]
        {
            let mut c = cfg("postgres://berth@db/berth?sslmode=require");
            assert!(matches!(tls(&mut c, None).unwrap(), Tls::Rustls(_)));
        }
    }

    #[test]
    fn successors_bound_prefix_scans() {
        assert_eq!(successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(successor(b"\xff\xff"), None);
        assert_eq!(successor(b""), None);
    }
}
