//! Background tasks (cleanup, reaper, mail queue...) share one cancellation
//! token, so shutdown can stop them all and wait for each to finish its step.

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
