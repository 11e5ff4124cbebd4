//! The shared state on PostgreSQL: rollout's own versioned schema, the journal's events in
//! order (each announced with NOTIFY), and run locks held as session advisory locks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use postgres::{Client, Config as PgConfig};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, ExitCode, Precondition};

/// The schema version this rollout writes; a database at a newer one is refused.
pub const SCHEMA_VERSION: i32 = 2;
/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a held lock says its holder is still there.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// The advisory lock that serializes migrations (rollout's own key space: `r`,`o`,`l`,`l`).
const MIGRATION_KEY: i64 = 0x726f_6c6c_0000_0001;

/// Each version's statements, in order; `{s}` is the schema.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE {s}.events (
        run_id text NOT NULL,
        seq integer NOT NULL,
        ts timestamptz NOT NULL,
        event text NOT NULL,
        host text NOT NULL,
        line text NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE {s}.locks (
        runbook text PRIMARY KEY,
        lock_key bigint NOT NULL,
        run_id text NOT NULL,
        user_name text NOT NULL,
        host text NOT NULL,
        pid integer NOT NULL,
        started timestamptz NOT NULL,
        heartbeat timestamptz NOT NULL
    );
",
    "
    CREATE TABLE {s}.approvals (
        run_id text NOT NULL,
        step text NOT NULL,
        digest text NOT NULL,
        approve boolean NOT NULL,
        user_name text NOT NULL,
        host text NOT NULL,
        reason text NOT NULL,
        ts timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (run_id, step, digest, user_name)
    );
",
];

/// How to reach the database: its parsed connection string, and the names for messages.
#[derive(Clone)]
pub struct Target {
    config: PgConfig,
    tls: MakeRustlsConnect,
    pub schema: String,
    /// The variable holding the connection string.
    pub env: String,
    /// `db rollout on 127.0.0.1:5432`, without the user or password.
    pub shown: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Target {{ {} (schema {}) }}", self.shown, self.schema)
    }
}

impl Target {
    /// The database `env` names, with rollout's tables in `schema`.
    pub fn from_env(env: &str, schema: &str) -> Result<Target, Error> {
        let url = crate::redact::secret_from_env(env).ok_or_else(|| {
            Error::new(
                ExitCode::Preflight,
                anyhow!("{env} is not set: export it with the shared state's connection string (rollout.yaml names it in state.url_env)"),
            )
        })?;
        let mut config: PgConfig = url.parse().map_err(|_| {
            Error::invalid(anyhow!(
                "{env} is not a PostgreSQL connection string (postgres://USER:PASSWORD@HOST:PORT/DATABASE, or key=value pairs)"
            ))
        })?;
        if let Some(password) = config.get_password() {
            crate::redact::register(&String::from_utf8_lossy(password));
        }
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .tcp_user_timeout(Duration::from_secs(20))
            .application_name(concat!("rollout ", env!("CARGO_PKG_VERSION")));
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
            .map(|(host, port)| match host {
                postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let shown = format!("database {} on {}", config.get_dbname().unwrap_or("(default)"), hosts.join(", "));
        Ok(Target { config, tls: tls(), schema: schema.to_string(), env: env.to_string(), shown })
    }

    /// A new connection; a refused login is a failed precondition naming the variable.
    pub fn connect(&self) -> Result<Client, Error> {
        self.config.connect(self.tls.clone()).map_err(|error| self.refused(&error))
    }

    /// What a failed connection or statement means, for the operator.
    pub fn refused(&self, error: &postgres::Error) -> Error {
        use postgres::error::SqlState;
        let said = error.as_db_error().map_or_else(|| error.to_string(), |db| db.message().to_string());
        let said = crate::redact::scrub(&said).into_owned();
        let login = [SqlState::INVALID_PASSWORD, SqlState::INVALID_AUTHORIZATION_SPECIFICATION];
        match error.code() {
            Some(code) if login.contains(code) => Error::new(
                ExitCode::Preflight,
                Precondition(format!(
                    "the shared state ({}) refused the login: {said}; check {}",
                    self.shown, self.env
                )),
            ),
            _ => Error::from(anyhow!("the shared state ({}) failed: {said}", self.shown)),
        }
    }

    /// `{s}` in `sql` as the quoted schema.
    fn sql(&self, sql: &str) -> String {
        sql.replace("{s}", &format!("\"{}\"", self.schema))
    }

    /// The NOTIFY channel of this schema's events.
    pub fn channel(&self) -> String {
        format!("rollout_{}", self.schema)
    }
}

/// TLS with the web's root certificates, for `sslmode=require`; `prefer` falls back to plain.
fn tls() -> MakeRustlsConnect {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring has rustls's default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    MakeRustlsConnect::new(config)
}

/// What a migration found and did.
#[derive(Debug, PartialEq, Eq)]
pub struct Migrated {
    pub from: i32,
    pub to: i32,
}

/// The schema brought to this rollout's version, idempotently: one migration at a time,
/// under an advisory lock, each in one transaction. A newer schema is refused.
pub fn migrate(target: &Target, client: &mut Client) -> Result<Migrated, Error> {
    let fail = |e: postgres::Error| target.refused(&e);
    let mut tx = client.transaction().map_err(fail)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_KEY]).map_err(fail)?;
    tx.batch_execute(&target.sql(
        "CREATE SCHEMA IF NOT EXISTS {s}; CREATE TABLE IF NOT EXISTS {s}.schema_version (version integer NOT NULL)",
    ))
    .map_err(fail)?;
    let found: Option<i32> = tx
        .query_opt(&target.sql("SELECT max(version) FROM {s}.schema_version"), &[])
        .map_err(fail)?
        .and_then(|row| row.get(0));
    let from = found.unwrap_or(0);
    if from > SCHEMA_VERSION {
        return Err(Error::new(
            ExitCode::Preflight,
            Precondition(format!(
                "the shared state ({}, schema {}) is at version {from}, made by a newer rollout; this one knows version {SCHEMA_VERSION}: upgrade rollout",
                target.shown, target.schema
            )),
        ));
    }
    for (version, statements) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        tx.batch_execute(&target.sql(statements)).map_err(fail)?;
        tx.execute(&target.sql("INSERT INTO {s}.schema_version (version) VALUES ($1)"), &[&(version as i32 + 1)])
            .map_err(fail)?;
    }
    tx.commit().map_err(fail)?;
    Ok(Migrated { from, to: SCHEMA_VERSION })
}

/// One event as the shared journal holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub seq: i32,
    pub text: String,
}

/// Add events of `run_id` (their place in its journal, and the line), skipping any already
/// there, and announce each; one transaction, so a watcher sees them in order.
pub fn append(target: &Target, client: &mut Client, run_id: &str, host: &str, lines: &[Line]) -> Result<(), Error> {
    let fail = |e: postgres::Error| target.refused(&e);
    let mut tx = client.transaction().map_err(fail)?;
    let insert = target.sql(
        "INSERT INTO {s}.events (run_id, seq, ts, event, host, line)
         VALUES ($1, $2, coalesce(($4::text::jsonb->>'ts')::timestamptz, now()), coalesce($4::text::jsonb->>'event', ''), $3, $4::text)
         ON CONFLICT (run_id, seq) DO NOTHING",
    );
    for line in lines {
        let added = tx.execute(&insert, &[&run_id, &line.seq, &host, &line.text]).map_err(fail)?;
        if added > 0 {
            let payload = format!("{run_id} {}", line.seq);
            tx.execute("SELECT pg_notify($1, $2)", &[&target.channel(), &payload]).map_err(fail)?;
        }
    }
    tx.commit().map_err(fail)
}

/// Every run the shared journal has, with the number of its last event plus one.
pub fn runs(target: &Target, client: &mut Client) -> Result<Vec<(String, i32)>, Error> {
    let rows = client
        .query(&target.sql("SELECT run_id, max(seq) + 1 FROM {s}.events GROUP BY run_id ORDER BY run_id"), &[])
        .map_err(|e| target.refused(&e))?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// The events of `run_id` from `from` on, in order.
pub fn lines(target: &Target, client: &mut Client, run_id: &str, from: i32) -> Result<Vec<Line>, Error> {
    let rows = client
        .query(
            &target.sql("SELECT seq, line FROM {s}.events WHERE run_id = $1 AND seq >= $2 ORDER BY seq"),
            &[&run_id, &from],
        )
        .map_err(|e| target.refused(&e))?;
    Ok(rows.iter().map(|row| Line { seq: row.get(0), text: row.get(1) }).collect())
}

/// Who holds (or last held) a runbook's shared lock: named as this machine's lock names its
/// holder, and how long since its heartbeat.
#[derive(Debug, Clone)]
pub struct LockRow {
    pub holder: crate::engine::lock::Holder,
    /// Seconds since its last heartbeat.
    pub quiet: f64,
}

impl std::fmt::Display for LockRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, last heard from {:.0} s ago", self.holder, self.quiet)
    }
}

/// The advisory lock key of a runbook in this schema.
pub fn lock_key(target: &Target, runbook: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{}\0{runbook}", target.schema).as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The holder row of `runbook`, if any.
pub fn holder(target: &Target, client: &mut Client, runbook: &str) -> Result<Option<LockRow>, Error> {
    let row = client
        .query_opt(
            &target.sql(
                "SELECT run_id, user_name, host, pid, to_char(started AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                        extract(epoch FROM now() - heartbeat)::float8
                 FROM {s}.locks WHERE runbook = $1",
            ),
            &[&runbook],
        )
        .map_err(|e| target.refused(&e))?;
    Ok(row.map(|row| LockRow {
        holder: crate::engine::lock::Holder {
            run_id: row.get(0),
            user: row.get(1),
            host: row.get(2),
            pid: row.get::<_, i32>(3) as u32,
            started: row.get(4),
            held: true,
        },
        quiet: row.get(5),
    }))
}

/// Whether the runbook's advisory lock is free now (taken and given back at once on `client`).
pub fn is_free(target: &Target, client: &mut Client, runbook: &str) -> Result<bool, Error> {
    let key = lock_key(target, runbook);
    let taken: bool =
        client.query_one("SELECT pg_try_advisory_lock($1)", &[&key]).map_err(|e| target.refused(&e))?.get(0);
    if taken {
        client.execute("SELECT pg_advisory_unlock($1)", &[&key]).map_err(|e| target.refused(&e))?;
    }
    Ok(taken)
}

/// Remove the holder row of a lock nobody holds.
pub fn remove_holder(target: &Target, client: &mut Client, runbook: &str) -> Result<(), Error> {
    client
        .execute(&target.sql("DELETE FROM {s}.locks WHERE runbook = $1"), &[&runbook])
        .map(drop)
        .map_err(|e| target.refused(&e))
}

/// A runbook's shared lock, held for a run on a connection of its own by a thread that beats
/// its heart; released when dropped, or by the server when the connection goes.
pub struct SharedLock {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Set when the connection was lost and the lock could not be taken back: the run must
    /// stop at its next safe point.
    lost: Arc<AtomicBool>,
    /// The holder the row still named when the lock was taken: a run whose connection is gone.
    pub taken_over: Option<LockRow>,
    pub shown: String,
}

impl std::fmt::Debug for SharedLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedLock {{ {} }}", self.shown)
    }
}

/// Who takes a lock.
#[derive(Debug, Clone)]
pub struct Taker {
    pub run_id: String,
    pub user: String,
    pub host: String,
}

impl SharedLock {
    /// Take `runbook`'s lock, or refuse (exit 5) naming who holds it.
    pub fn acquire(target: &Target, runbook: &str, taker: &Taker) -> Result<SharedLock, Error> {
        let mut client = target.connect()?;
        let key = lock_key(target, runbook);
        let taken: bool =
            client.query_one("SELECT pg_try_advisory_lock($1)", &[&key]).map_err(|e| target.refused(&e))?.get(0);
        if !taken {
            let who = holder(target, &mut client, runbook)?
                .map(|row| row.to_string())
                .unwrap_or_else(|| "another rollout process".into());
            return Err(Error::new(
                ExitCode::Locked,
                anyhow!("runbook {runbook} is locked in the shared state by {who}"),
            )
            .with_hint(format!(
                "wait for that run to finish, or ask its holder; `rollout watch` follows it ({}, schema {})",
                target.shown, target.schema
            )));
        }
        let taken_over = holder(target, &mut client, runbook)?;
        write_holder(target, &mut client, runbook, key, taker)?;
        let lost = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::channel();
        let beat = Heartbeat {
            target: target.clone(),
            runbook: runbook.to_string(),
            key,
            taker: taker.clone(),
            lost: Arc::clone(&lost),
        };
        let thread = std::thread::Builder::new()
            .name("shared-lock".into())
            .spawn(move || beat.run(client, &stopped))
            .context("cannot start the shared lock's heartbeat")?;
        Ok(SharedLock {
            stop: Some(stop),
            thread: Some(thread),
            lost,
            taken_over,
            shown: format!("{}, schema {}", target.shown, target.schema),
        })
    }

    /// Whether the lock was lost (its connection went and another run took it meanwhile).
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

fn write_holder(target: &Target, client: &mut Client, runbook: &str, key: i64, taker: &Taker) -> Result<(), Error> {
    let pid = std::process::id() as i32;
    client
        .execute(
            &target.sql(
                "INSERT INTO {s}.locks (runbook, lock_key, run_id, user_name, host, pid, started, heartbeat)
                 VALUES ($1, $2, $3, $4, $5, $6, now(), now())
                 ON CONFLICT (runbook) DO UPDATE SET lock_key = $2, run_id = $3, user_name = $4, host = $5,
                     pid = $6, started = now(), heartbeat = now()",
            ),
            &[&runbook, &key, &taker.run_id, &taker.user, &taker.host, &pid],
        )
        .map(drop)
        .map_err(|e| target.refused(&e))
}

/// The lock's connection, kept alive: a heartbeat every few seconds; a lost connection is
/// opened again and the lock taken back, or marked lost when another run has it.
struct Heartbeat {
    target: Target,
    runbook: String,
    key: i64,
    taker: Taker,
    lost: Arc<AtomicBool>,
}

impl Heartbeat {
    fn run(self, mut client: Client, stopped: &mpsc::Receiver<()>) {
        let beat = self.target.sql("UPDATE {s}.locks SET heartbeat = now() WHERE runbook = $1 AND run_id = $2");
        loop {
            match stopped.recv_timeout(HEARTBEAT) {
                Err(RecvTimeoutError::Timeout) => {}
                // Released: the row goes, then the lock (and the connection with it).
                _ => {
                    let _ = client.execute(
                        &self.target.sql("DELETE FROM {s}.locks WHERE runbook = $1 AND run_id = $2"),
                        &[&self.runbook, &self.taker.run_id],
                    );
                    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&self.key]);
                    return;
                }
            }
            if client.execute(&beat, &[&self.runbook, &self.taker.run_id]).is_ok() {
                continue;
            }
            // The connection went (a restarted server, a network cut): its lock went with it.
            match self.retake() {
                Some(again) => client = again,
                None if self.lost.load(Ordering::SeqCst) => return,
                None => {}
            }
        }
    }

    /// A new connection holding the lock again; None while the server cannot be reached
    /// (tried again at the next beat), and `lost` set when another run took the lock.
    fn retake(&self) -> Option<Client> {
        let mut client = self.target.connect().ok()?;
        let taken: bool = client.query_one("SELECT pg_try_advisory_lock($1)", &[&self.key]).ok()?.get(0);
        if !taken {
            self.lost.store(true, Ordering::SeqCst);
            return None;
        }
        write_holder(&self.target, &mut client, &self.runbook, self.key, &self.taker).ok()?;
        Some(client)
    }
}

impl Drop for SharedLock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A client kept for the events of one run, opened again after the server went away.
pub struct Events {
    pub target: Target,
    client: Mutex<Option<Client>>,
}

impl Events {
    pub fn new(target: Target, client: Client) -> Events {
        Events { target, client: Mutex::new(Some(client)) }
    }

    /// `append`, on the kept connection or a new one.
    pub fn append(&self, run_id: &str, host: &str, lines: &[Line]) -> Result<(), Error> {
        self.with(|target, client| append(target, client, run_id, host, lines))
    }

    /// `work` on the kept connection, or a new one if it was lost.
    pub fn with<T>(&self, work: impl FnOnce(&Target, &mut Client) -> Result<T, Error>) -> Result<T, Error> {
        let mut kept = self.client.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if kept.as_ref().is_none_or(Client::is_closed) {
            *kept = Some(self.target.connect()?);
        }
        let client = kept.as_mut().expect("connected above");
        let done = work(&self.target, client);
        if done.is_err() && client.is_closed() {
            *kept = None;
        }
        done
    }
}

/// One engineer's decision on a step's plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub user: String,
    pub host: String,
    pub approve: bool,
    pub reason: String,
}

/// Record `decision` on the plan `digest` of `run_id`'s `step` (a later one by the same
/// engineer replaces it), and announce it.
pub fn decide(
    target: &Target,
    client: &mut Client,
    run_id: &str,
    step: &str,
    digest: &str,
    decision: &Decision,
) -> Result<(), Error> {
    let fail = |e: postgres::Error| target.refused(&e);
    let mut tx = client.transaction().map_err(fail)?;
    tx.execute(
        &target.sql(
            "INSERT INTO {s}.approvals (run_id, step, digest, approve, user_name, host, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (run_id, step, digest, user_name) DO UPDATE SET approve = $4, host = $6, reason = $7, ts = now()",
        ),
        &[&run_id, &step, &digest, &decision.approve, &decision.user, &decision.host, &decision.reason],
    )
    .map_err(fail)?;
    tx.execute("SELECT pg_notify($1, $2)", &[&target.channel(), &format!("{run_id} approval")]).map_err(fail)?;
    tx.commit().map_err(fail)
}

/// The decisions on the plan `digest` of `run_id`'s `step`, oldest first.
pub fn decisions(
    target: &Target,
    client: &mut Client,
    run_id: &str,
    step: &str,
    digest: &str,
) -> Result<Vec<Decision>, Error> {
    let rows = client
        .query(
            &target.sql(
                "SELECT user_name, host, approve, reason FROM {s}.approvals
                 WHERE run_id = $1 AND step = $2 AND digest = $3 ORDER BY ts",
            ),
            &[&run_id, &step, &digest],
        )
        .map_err(|e| target.refused(&e))?;
    Ok(rows
        .iter()
        .map(|row| Decision { user: row.get(0), host: row.get(1), approve: row.get(2), reason: row.get(3) })
        .collect())
}
