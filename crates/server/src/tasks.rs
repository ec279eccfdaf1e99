//! Background tasks (cleanup, reaper, mail queue...) share one cancellation
//! token, so shutdown can stop them all and wait for each to finish its step.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub struct BackgroundTasks {
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

impl BackgroundTasks {
    pub fn new() -> Self {
        BackgroundTasks {
            cancel: CancellationToken::new(),
            tasks: JoinSet::new(),
        }
    }

    /// Spawns `task`, which must return soon after the token is cancelled.
    pub fn spawn<F, Fut>(&mut self, name: &'static str, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let future = task(self.cancel.clone());
        self.tasks.spawn(async move {
            future.await;
            tracing::debug!(task = name, "background task stopped");
        });
    }

    /// Cancels every task and waits up to `grace` for them to finish.
    pub async fn shutdown(mut self, grace: Duration) {
        self.cancel.cancel();
        let all_done = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all_done).await.is_err() {
            tracing::warn!("background tasks did not stop in time; aborting them");
            self.tasks.abort_all();
        }
    }
}

/// Runs `step` now and then every `period` until cancelled. A failing step is
/// logged and retried at the next period: housekeeping must never stop for good.
pub async fn every<F, Fut>(
    name: &'static str,
    period: Duration,
    cancel: CancellationToken,
    mut step: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    loop {
        if let Err(error) = step().await {
            tracing::warn!(task = name, %error, "periodic task failed");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
    }
}
