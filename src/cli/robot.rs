//! `berth robot create|list|revoke`: robot accounts, on a running server
//! through its admin API (`--url`, with an admin's `--user`), or on a
//! stopped server's data directory.

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use berth::auth::robots::NewRobot;
use berth::auth::Action;
use berth::config::Config;
use berth::registry::Registry;
use berth::store::{Store, StoreOptions};

use super::Error;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    /// A running registry (`http://registry:5000`); without it the data
    /// directory is used, and the server must be stopped.
    #[arg(long, global = true)]
    url: Option<String>,
    /// An admin's `name:password` for `--url`.
    #[arg(long, global = true, env = "BERTH_USER")]
    user: Option<String>,
    #[arg(long, global = true, default_value = "berth-data")]
    data_dir: PathBuf,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Create a robot; prints its login name and secret (shown once).
    Create {
        name: String,
        /// Repository globs it may act on (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        repos: Vec<String>,
        /// What it may do there: pull, push, delete (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "pull")]
        actions: Vec<String>,
        /// Valid this many days (0 = no expiry).
        #[arg(long, default_value_t = 90)]
        days: u64,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List robots (never their secrets).
    List,
    /// Revoke a robot: its logins and its tokens stop at once.
    Revoke { name: String },
}

pub fn run(a: Args) -> Result<(), Error> {
    let out = match a.url.clone() {
        Some(url) => remote(&a, &url)?,
        None => local(&a)?,
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&out).expect("JSON prints")
    );
    Ok(())
}

fn new_robot(a: &Args) -> Result<Option<NewRobot>, Error> {
    let Command::Create {
        name,
        repos,
        actions,
        days,
        description,
    } = &a.command
    else {
        return Ok(None);
    };
    let actions = actions
        .iter()
        .map(|s| serde_json::from_value::<Action>(serde_json::Value::String(s.trim().to_string())))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| Error::Usage("--actions takes pull, push, delete".into()))?;
    Ok(Some(NewRobot {
        name: name.strip_prefix("robot$").unwrap_or(name).to_string(),
        description: description.clone(),
        repos: repos.clone(),
        actions,
        expires_in_secs: days.saturating_mul(86_400),
    }))
}

fn local(a: &Args) -> Result<serde_json::Value, Error> {
    let store = Store::open(&a.data_dir, &StoreOptions::default())?;
    let registry = Registry::new(Arc::new(store), Config::default());
    Ok(match &a.command {
        Command::Create { .. } => {
            let new = new_robot(a)?.expect("create");
            let (robot, secret) = registry.robot_create(&new)?;
            serde_json::json!({"name": robot.user(), "secret": secret, "expires": robot.expires})
        }
        Command::List => serde_json::to_value(registry.robot_list()?).expect("JSON"),
        Command::Revoke { name } => match registry.robot_revoke(name)? {
            true => serde_json::json!({"revoked": name}),
            false => return Err(Error::Usage(format!("no robot {name}"))),
        },
    })
}

fn remote(a: &Args, url: &str) -> Result<serde_json::Value, Error> {
    let base = format!("{}/_berth/robots", url.trim_end_matches('/'));
    let agent = ureq::AgentBuilder::new().build();
    let with_auth = |r: ureq::Request| match &a.user {
        Some(u) => r.set(
            "Authorization",
            &format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(u)
            ),
        ),
        None => r,
    };
    let answer = match &a.command {
        Command::Create { .. } => {
            let new = new_robot(a)?.expect("create");
            with_auth(agent.post(&base))
                .set("Content-Type", "application/json")
                .send_string(&serde_json::to_string(&new).expect("JSON"))
        }
        Command::List => with_auth(agent.get(&base)).call(),
        Command::Revoke { name } => with_auth(agent.delete(&format!("{base}/{name}"))).call(),
    };
    match answer {
        Ok(r) if r.status() == 204 => Ok(serde_json::json!({"revoked": true})),
        Ok(r) => {
            let text = r.into_string().map_err(|e| Error::Remote(e.to_string()))?;
            serde_json::from_str(&text).map_err(|e| Error::Remote(format!("{url}: {e}")))
        }
        Err(ureq::Error::Status(code, r)) => Err(Error::Remote(format!(
            "{url} answered {code}: {}",
            r.into_string().unwrap_or_default()
        ))),
        Err(e) => Err(Error::Remote(format!("{url}: {e}"))),
    }
}
