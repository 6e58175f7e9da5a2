//! The object store's client is async (tokio); the store is called from
//! plain threads and from actix's async workers alike. Each call runs on a
//! runtime of the bodies' own and the caller waits on a channel: no runtime
//! is ever entered from inside another (which panics).

use std::future::Future;
use std::io;

use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

pub struct Bridge {
    /// Taken at drop: shut down in the background, which is allowed from
    /// any thread (dropping a runtime inside an async context panics).
    rt: Option<Runtime>,
}

impl Bridge {
    pub fn new() -> io::Result<Bridge> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("berth-s3")
            .enable_all()
            .build()?;
        Ok(Bridge { rt: Some(rt) })
    }

    fn rt(&self) -> &Runtime {
        self.rt.as_ref().expect("present until drop")
    }

    /// Run `fut` on the bridge's runtime and wait for its result.
    pub fn run<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt().spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().expect("the runtime runs every task it accepts")
    }

    /// Start `fut` without waiting (a part upload); `join` waits for it.
    pub fn spawn<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> JoinHandle<T> {
        self.rt().spawn(fut)
    }

    pub fn join<T: Send + 'static>(&self, task: JoinHandle<T>) -> io::Result<T> {
        self.run(task).map_err(io::Error::other)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
