//! End-to-end benchmark of the pool: starts the real server on 127.0.0.1 (port 0), sends the
//! benchmark sentences over HTTP and reports embeddings per second and request latency.
//! Two load shapes: one client sending requests of N texts back to back (comparable to
//! sentence-transformers' `encode(batch_size=N)`), and N concurrent clients sending one text
//! each (the dynamic batcher forms the batches).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::body::Bytes;
use axum::serve::ListenerExt as _;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::{AppState, Metrics, ServerConfig};

/// Options of the `bench` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Number of benchmark sentences.
    #[arg(long, default_value_t = 2048)]
    pub sentences: usize,
    /// Batch sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    pub batch_sizes: Vec<usize>,
    /// Also measure N concurrent single-text clients per batch size N.
    #[arg(long)]
    pub concurrent: bool,
    /// Untimed requests sent before each measurement.
    #[arg(long, default_value_t = 8)]
    pub warmup_requests: usize,
}

const SUBJECTS: &[&str] = &[
    "The miller",
    "A young scout",
    "The old queen",
    "Two merchants",
    "The harbour master",
    "A tired soldier",
    "The village healer",
    "Three farmers",
    "The blacksmith",
    "A wandering monk",
    "The guild treasurer",
    "Some fishermen",
    "The captain of the guard",
    "A stranger",
    "The innkeeper",
    "Our neighbour",
];
const VERBS: &[&str] = &[
    "sold",
    "found",
    "repaired",
    "lost",
    "carried",
    "painted",
    "hid",
    "stole",
    "bought",
    "burned",
    "guarded",
    "counted",
    "delivered",
    "forgot",
    "described",
    "abandoned",
];
const OBJECTS: &[&str] = &[
    "a sack of grain",
    "the silver key",
    "an old map",
    "twelve barrels of ale",
    "the broken cart",
    "a letter from the capital",
    "the red banner",
    "some fresh bread",
    "a heavy iron chest",
    "the last horse",
    "a bundle of furs",
    "the temple bell",
];
const PLACES: &[&str] = &[
    "near the river",
    "in the market",
    "behind the mill",
    "at the northern gate",
    "on the hill",
    "by the docks",
    "inside the chapel",
    "under the bridge",
];
const ENDINGS: &[&str] = &[
    "",
    " before sunrise",
    " yesterday",
    " during the storm",
    " after the festival",
    " while everyone slept",
    " for the third time this week",
    " without telling anyone",
];

/// `count` short English sentences, the same on every run (a fixed xorshift sequence picks
/// the words). The Python reference benchmark reads them from `bench-sentences`.
pub fn sentences(count: usize) -> Vec<String> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut pick = |choices: &[&'static str]| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        choices[(state % choices.len() as u64) as usize]
    };
    (0..count)
        .map(|_| {
            format!(
                "{} {} {} {}{}.",
                pick(SUBJECTS),
                pick(VERBS),
                pick(OBJECTS),
                pick(PLACES),
                pick(ENDINGS)
            )
        })
        .collect()
}

/// Result of one measurement.
struct Measurement {
    label: String,
    embeddings_per_second: f64,
    p50: Duration,
    p99: Duration,
    mean_batch_size: f64,
    cpu_ms_per_embedding: Option<f64>,
}

/// CPU time (user + system, all threads) this process has used so far, from
/// `/proc/self/stat`; `None` off Linux. Clock ticks are taken to be 10 ms (`USER_HZ` = 100,
/// fixed on Linux x86-64 and aarch64).
fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after_name = stat.rsplit_once(')')?.1;
    let mut fields = after_name.split_whitespace().skip(11);
    let user_ticks: u64 = fields.next()?.parse().ok()?;
    let system_ticks: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((user_ticks + system_ticks) * 10))
}

/// Starts the server in-process, runs every measurement, prints a Markdown table.
pub async fn run(config: &ServerConfig, options: &BenchOptions) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let pool = crate::load_pool(
        &config.model_dir,
        config.pool_limits(),
        Arc::clone(&metrics),
    )
    .with_context(|| format!("loading the model from {}", config.model_dir.display()))?;
    let state = AppState::ready(&config.model_name, Arc::clone(&metrics), pool);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("binding 127.0.0.1:0")?;
    let address = listener.local_addr().context("reading the bound address")?;
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, crate::app(state)).await });

    let sentences = sentences(options.sentences);
    let mut measurements = Vec::new();
    for &batch_size in &options.batch_sizes {
        let batch_size = batch_size.max(1);
        measurements.push(
            measure(
                &metrics,
                address,
                &sentences,
                batch_size,
                1,
                options.warmup_requests,
            )
            .await
            .with_context(|| format!("client batch {batch_size}"))?,
        );
        if options.concurrent && batch_size > 1 {
            measurements.push(
                measure(
                    &metrics,
                    address,
                    &sentences,
                    1,
                    batch_size,
                    options.warmup_requests,
                )
                .await
                .with_context(|| format!("{batch_size} concurrent clients"))?,
            );
        }
    }
    println!(
        "candle pool over HTTP, {} sentences, {} compute threads",
        sentences.len(),
        config.compute_threads()
    );
    println!(
        "| load | embeddings/s | p50 latency | p99 latency | CPU ms per embedding | mean texts per model batch |"
    );
    println!("|---|---|---|---|---|---|");
    for m in measurements {
        let cpu = m
            .cpu_ms_per_embedding
            .map_or_else(|| "n/a".to_owned(), |ms| format!("{ms:.2}"));
        println!(
            "| {} | {:.0} | {:.1} ms | {:.1} ms | {cpu} | {:.1} |",
            m.label,
            m.embeddings_per_second,
            m.p50.as_secs_f64() * 1e3,
            m.p99.as_secs_f64() * 1e3,
            m.mean_batch_size
        );
    }
    Ok(())
}

/// `clients` connections, each sending requests of `texts_per_request` sentences back to back,
/// together covering every sentence once.
async fn measure(
    metrics: &Metrics,
    address: SocketAddr,
    sentences: &[String],
    texts_per_request: usize,
    clients: usize,
    warmup_requests: usize,
) -> anyhow::Result<Measurement> {
    let requests: Vec<String> = sentences
        .chunks(texts_per_request)
        .map(|chunk| serde_json::json!({ "input": chunk, "model": "bench" }).to_string())
        .collect();
    let mut warmup = connect(address).await?;
    for body in requests.iter().take(warmup_requests) {
        post_embeddings(&mut warmup, body.clone(), 0).await?;
    }
    let batches_before = metrics.batch_size.count();
    let texts_before = metrics.batch_size.sum();
    let requests = Arc::new(requests);
    let cpu_before = process_cpu_time();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        let requests = Arc::clone(&requests);
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(address).await?;
            let mut latencies = Vec::new();
            for body in requests.iter().skip(client).step_by(clients) {
                let sent = Instant::now();
                post_embeddings(&mut sender, body.clone(), 1).await?;
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(requests.len());
    for task in tasks {
        latencies.extend(task.await.context("client task panicked")??);
    }
    let elapsed = started.elapsed();
    let cpu_used = cpu_before
        .zip(process_cpu_time())
        .map(|(before, after)| after.saturating_sub(before));
    latencies.sort();
    let percentile = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    let batches = metrics.batch_size.count() - batches_before;
    let texts = metrics.batch_size.sum() - texts_before;
    Ok(Measurement {
        label: if clients == 1 {
            format!("batch {texts_per_request} (1 client, {texts_per_request} texts per request)")
        } else {
            format!("{clients} concurrent clients, 1 text per request")
        },
        embeddings_per_second: sentences.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(0.50),
        p99: percentile(0.99),
        mean_batch_size: texts / batches.max(1) as f64,
        cpu_ms_per_embedding: cpu_used.map(|cpu| cpu.as_secs_f64() * 1e3 / sentences.len() as f64),
    })
}

async fn connect(address: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .with_context(|| format!("connecting to {address}"))?;
    stream.set_nodelay(true).context("setting TCP_NODELAY")?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake")?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Posts one embeddings request and checks the answer has as many vectors as texts
/// (`min_vectors` is a floor for warm-up requests, whose size is not tracked).
async fn post_embeddings(
    sender: &mut SendRequest<Full<Bytes>>,
    body: String,
    min_vectors: usize,
) -> anyhow::Result<()> {
    let request = hyper::Request::post("/v1/embeddings")
        .header(hyper::header::HOST, "127.0.0.1")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .context("building the request")?;
    sender.ready().await.context("connection not ready")?;
    let response = sender
        .send_request(request)
        .await
        .context("sending the request")?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .context("reading the response")?
        .to_bytes();
    if !status.is_success() {
        bail!("status {status}: {}", String::from_utf8_lossy(&bytes));
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        data: Vec<serde::de::IgnoredAny>,
    }
    let answer: Answer = serde_json::from_slice(&bytes).context("parsing the response")?;
    if answer.data.len() < min_vectors {
        bail!(
            "expected at least {min_vectors} embeddings, got {}",
            answer.data.len()
        );
    }
    Ok(())
}
