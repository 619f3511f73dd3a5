//! The cron-connector of a node: functions annotated `topic: cron-function`
//! with a `schedule` are invoked through the node's gateway on schedule —
//! `POST /function/<name>` with an empty body and `X-Connector:
//! cron-connector`, as OpenFaaS's cron-connector does.
//!
//! Schedules are standard five-field cron (`*/1 * * * *`); a sixth, leading
//! seconds field is accepted too (`*/2 * * * * *`), which tests use.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;

use crate::gateway::Gateway;

/// How often the schedules are looked at.
const TICK: Duration = Duration::from_millis(100);

struct Entry {
    schedule: String,
    cron: Option<Cron>,
    next: Option<DateTime<Utc>>,
}

/// Runs the cron connector of `gateway`, listening on `port`, forever.
pub async fn run(gateway: Arc<Gateway>, port: u16) {
    let client = reqwest::Client::new();
    let mut entries: HashMap<String, Entry> = HashMap::new();
    loop {
        tokio::time::sleep(TICK).await;
        let now = Utc::now();
        let schedules = gateway.functions.cron_schedules().await;
        entries.retain(|name, _| schedules.iter().any(|(n, _)| n == name));
        for (name, schedule) in schedules {
            let entry = entries.entry(name.clone()).or_insert_with(|| Entry {
                schedule: String::new(),
                cron: None,
                next: None,
            });
            if entry.schedule != schedule {
                entry.schedule = schedule.clone();
                entry.cron = match Cron::from_str(&schedule) {
                    Ok(cron) => Some(cron),
                    Err(error) => {
                        tracing::warn!(node = %gateway.node, function = %name, "invalid schedule {schedule:?}: {error}");
                        None
                    }
                };
                entry.next = entry
                    .cron
                    .as_ref()
                    .and_then(|c| c.find_next_occurrence(&now, false).ok());
            }
            let (Some(cron), Some(next)) = (&entry.cron, entry.next) else {
                continue;
            };
            if now >= next {
                entry.next = cron.find_next_occurrence(&now, false).ok();
                let request = client
                    .post(format!("http://127.0.0.1:{port}/function/{name}"))
                    .header("X-Connector", "cron-connector")
                    .header("X-Topic", "cron-function")
                    .body(Vec::new());
                let node = gateway.node.clone();
                tokio::spawn(async move {
                    match request.send().await {
                        Ok(answer) => {
                            tracing::info!(%node, function = %name, status = %answer.status(), "cron invocation")
                        }
                        Err(error) => {
                            tracing::warn!(%node, function = %name, "cron invocation failed: {error}")
                        }
                    }
                });
            }
        }
    }
}
