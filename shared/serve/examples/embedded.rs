//! The doors alone over a fresh embedded store, for trying the routes with `curl` before
//! `worldfleet serve` exists: envelopes posted here wait on the intake queue (no stage runs),
//! feeds read from the store's feeds table.
//!
//! ```sh
//! WORLDFLEET_GATEWAY_KEYS=gw-sample=73616d70… cargo run -p worldfleet-serve --example embedded
//! ```

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use worldfleet_domain::names::{ALL_QUEUES, ALL_TABLES, dead_letter_queue};
use worldfleet_embedded::{EmbeddedStore, StoreOptions};
use worldfleet_ports::{Clock, Queue, QueueSpec, SystemClock, Table, TableSpec};
use worldfleet_serve::{ServeConfig, ServeState, gateway_keys_from_lookup};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = ServeConfig::from_env()?;
    let gateways = gateway_keys_from_lookup(|name| std::env::var(name).ok())?;
    let dir = tempfile::tempdir().context("temporary store directory")?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = EmbeddedStore::open(dir.path(), Arc::clone(&clock), StoreOptions::default())
        .context("open the embedded store")?;
    let queue: Arc<dyn Queue> = store.queue();
    let table: Arc<dyn Table> = store.table();
    for name in ALL_TABLES {
        table.ensure_table(&TableSpec { name: name.into() }).await?;
    }
    for name in ALL_QUEUES {
        let dead_letter = dead_letter_queue(name);
        queue
            .ensure_queue(&QueueSpec::dead_letter(&dead_letter))
            .await?;
        queue
            .ensure_queue(&QueueSpec::with_dead_letter(
                name,
                &dead_letter,
                Duration::from_secs(30),
            ))
            .await?;
    }
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("bind {}", config.bind))?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    let state = ServeState::new(queue, table, clock, gateways, config);
    worldfleet_serve::serve(listener, state, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    store.close();
    Ok(())
}
