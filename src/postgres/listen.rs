//! One dedicated connection per store that `LISTEN`s for new deliveries, and wakes the
//! process's idle workers, and for configuration changes, and drops the process's cached
//! configuration. It reconnects on its own; while it is down, workers fall back to their poll
//! interval and nothing is cached.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

use super::cache::ConfigCache;
use super::schema::CONFIG_CHANGED;

/// The running listener; dropping it stops it.
#[derive(Debug)]
pub(super) struct Listener {
    signal: Arc<Notify>,
    /// Turns true once the first try to listen has ended, listening or not.
    tried: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Listener {
    /// Starts listening on `channel`. Must run inside a tokio runtime.
    pub(super) fn start(
        config: tokio_postgres::Config,
        channel: String,
        cache: Arc<ConfigCache>,
    ) -> Self {
        let signal = Arc::new(Notify::new());
        let (tried, tried_rx) = watch::channel(false);
        let task = tokio::spawn(run(config, channel, signal.clone(), cache, tried));
        Self {
            signal,
            tried: tried_rx,
            task,
        }
    }

    pub(super) fn signal(&self) -> Arc<Notify> {
        self.signal.clone()
    }

    /// Waits, at most `wait`, until the first try to listen has ended: the lookups a process
    /// makes as it starts then use the cache (and wait for each other's reads) instead of
    /// all going to the database while the connection is still being opened.
    pub(super) async fn first_try(&self, wait: Duration) {
        // Every lookup passes here: once tried, only a read of the flag.
        if *self.tried.borrow() {
            return;
        }
        let mut tried = self.tried.clone();
        // An error means the task ended (the store is being dropped): no reason to wait.
        let _ = tokio::time::timeout(wait, tried.wait_for(|done| *done)).await;
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Wakes every idle worker, and leaves a wake-up for one that is busy claiming right now.
fn wake(signal: &Notify) {
    signal.notify_waiters();
    signal.notify_one();
}

async fn run(
    config: tokio_postgres::Config,
    channel: String,
    signal: Arc<Notify>,
    cache: Arc<ConfigCache>,
    tried: watch::Sender<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let listened = listen(&config, &channel, &signal, &cache, &tried).await;
        // Changes made while nobody listens are not heard: cache nothing until listening again.
        cache.reset(false);
        tried.send_replace(true);
        if listened {
            backoff = Duration::from_millis(100);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Listens until the connection ends; says whether it got as far as listening.
async fn listen(
    config: &tokio_postgres::Config,
    channel: &str,
    signal: &Notify,
    cache: &ConfigCache,
    tried: &watch::Sender<bool>,
) -> bool {
    let Ok((client, mut connection)) = config.connect(NoTls).await else {
        return false;
    };
    // The schema name is checked to need no quoting, so neither does the channel.
    let statement = format!("LISTEN {channel}");
    let mut listening = std::pin::pin!(client.batch_execute(&statement));
    let mut listened = false;
    loop {
        tokio::select! {
            done = &mut listening, if !listened => {
                if done.is_err() {
                    return false;
                }
                listened = true;
                // Changes are heard from now on; what was cached before may be stale.
                cache.reset(true);
                tried.send_replace(true);
                // Work may have arrived while nobody listened.
                wake(signal);
            }
            message = std::future::poll_fn(|cx| connection.poll_message(cx)) => match message {
                Some(Ok(AsyncMessage::Notification(n))) if n.payload() == CONFIG_CHANGED => {
                    cache.invalidate();
                }
                Some(Ok(AsyncMessage::Notification(_))) => wake(signal),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return listened,
            },
        }
    }
}
