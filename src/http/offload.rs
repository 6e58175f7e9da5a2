//! Registry calls that may wait on the network (a mirrored namespace's
//! upstream, metadata in PostgreSQL, bodies in a bucket) run on a blocking
//! thread: one that hangs then stalls its own request, not every
//! connection of the async worker. On the embedded default they run
//! inline (local memory and disk, microseconds: a thread hop would cost
//! more than it saves).

use std::sync::Arc;

use actix_web::web;

use super::errors::ApiError;
use super::State;
use crate::registry::{Error, Registry};

/// `f` on the registry, off the workers when what it reads for `repo` may
/// be across the network.
pub async fn read<T, F>(state: &State, repo: &str, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Registry) -> Result<T, Error> + Send + 'static,
{
    let reg: &Arc<Registry> = &state.registry;
    match reg.is_mirrored(repo) || reg.shared_store() || reg.bodies_remote() {
        true => {
            let reg = reg.clone();
            Ok(web::block(move || f(&reg)).await??)
        }
        false => Ok(f(reg)?),
    }
}
