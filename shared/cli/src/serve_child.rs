//! A `worldfleet serve` child process on its own store and loopback port, as `worldfleet chaos`
//! and `worldfleet soak` drive it: started with the world's gateway key, read through its
//! `/metrics`, SIGKILLed and restarted on the same store and port, stopped with SIGTERM.
//!
//! Its output goes to a log file beside the store; a process that exits without being asked
//! to is an error carrying the end of that log.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;

/// How to start a child: its store, its flags beyond the common ones, its environment.
pub struct ChildSpec {
    /// A name for messages and the log file (`<root>/<name>.log`).
    pub name: &'static str,
    /// The directory that holds the store (`<root>/<name>`) and the log.
    pub root: PathBuf,
    /// `GATEWAY=HEXKEY` of the world's gateway.
    pub key_line: String,
    /// Flags after `serve --no-models --data-dir … --bind …`.
    pub flags: Vec<String>,
    /// Variables beyond the keys and the rate limits.
    pub env: Vec<(String, String)>,
}

/// One `worldfleet serve` child process.
pub struct ServeChild {
    pub name: &'static str,
    /// The store's directory.
    pub dir: PathBuf,
    /// The process's stdout and stderr, every life appended.
    pub log: PathBuf,
    pub address: SocketAddr,
    /// SIGKILLs so far.
    pub kills: u32,
    exe: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    process: Option<std::process::Child>,
    /// The last `/metrics` text of every life that ended, and of the current one.
    ended_lives: Vec<String>,
    this_life: Option<String>,
}

impl ServeChild {
    /// Prepares the child (the store directory and a free port, kept for every restart).
    pub fn new(spec: ChildSpec) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("find the worldfleet executable")?;
        let dir = spec.root.join(spec.name);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let address = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .context("find a free loopback port")?;
        let mut args: Vec<String> = [
            "serve",
            "--no-models",
            "--data-dir",
            &dir.display().to_string(),
            "--bind",
            &address.to_string(),
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend(spec.flags);
        let mut env = vec![
            ("WORLDFLEET_GATEWAY_KEYS".to_owned(), spec.key_line),
            // The world is honest traffic: limits far above its per-player rate, at intake
            // and at the door.
            ("WORLDFLEET_RATE_BURST".to_owned(), "1000".to_owned()),
            ("WORLDFLEET_RATE_PER_SECOND".to_owned(), "1000".to_owned()),
            (
                "WORLDFLEET_SERVE_RATE_PER_SECOND".to_owned(),
                "0".to_owned(),
            ),
            (
                "WORLDFLEET_LOG".to_owned(),
                std::env::var("WORLDFLEET_LOG").unwrap_or_else(|_| "warn".to_owned()),
            ),
        ];
        env.extend(spec.env);
        Ok(Self {
            name: spec.name,
            log: spec.root.join(format!("{}.log", spec.name)),
            dir,
            address,
            kills: 0,
            exe,
            args,
            env,
            process: None,
            ended_lives: Vec::new(),
            this_life: None,
        })
    }

    /// Starts the process (it opens the store and listens; posts fail until it does).
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("open {}", self.log.display()))?;
        let mut stderr = log.try_clone()?;
        let _ = writeln!(stderr, "== start (after {} kills)", self.kills);
        let child = std::process::Command::new(&self.exe)
            .args(&self.args)
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .env_remove("WORLDFLEET_GATEWAY_KEYS_SECRET_ARN")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("start {} serve", self.exe.display()))?;
        self.process = Some(child);
        Ok(())
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(std::process::Child::id)
    }

    /// SIGKILL, then start again on the same store and port.
    pub fn kill_and_restart(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.process.take() {
            child.kill().context("SIGKILL the child process")?;
            child.wait()?;
        }
        self.kills += 1;
        self.end_life();
        self.spawn()
    }

    fn end_life(&mut self) {
        if let Some(text) = self.this_life.take() {
            self.ended_lives.push(text);
        }
    }

    /// An error when the process exited without being asked to.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(child) = &mut self.process
            && let Some(status) = child.try_wait()?
        {
            anyhow::bail!(
                "the {} process exited by itself ({status}); the end of its log:\n{}",
                self.name,
                tail(&self.log)
            );
        }
        Ok(())
    }

    /// The `/metrics` text, or `None` while the process does not answer (restarting).
    pub async fn metrics(&mut self) -> Option<String> {
        let text = tokio::time::timeout(Duration::from_secs(10), get(self.address, "/metrics"))
            .await
            .ok()?
            .ok()?;
        self.this_life = Some(text.clone());
        Some(text)
    }

    /// Waits until the process answers `/metrics` (it has opened its store and listens), so
    /// a driver that starts posting then is not refused.
    pub async fn wait_until_serving(&mut self, deadline: Instant) -> anyhow::Result<()> {
        loop {
            self.check_alive()?;
            if self.metrics().await.is_some() {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the {} process did not start serving in time; its log: {}",
                self.name,
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A counter summed over the process's lives (each life's last `/metrics` read).
    pub fn counter_over_lives(&self, series: &str) -> u64 {
        self.ended_lives
            .iter()
            .chain(&self.this_life)
            .map(|text| metric_sum(text, series))
            .sum()
    }

    /// Messages waiting on the intake queue (`u64::MAX` while the process does not answer).
    pub async fn backlog(&mut self) -> anyhow::Result<u64> {
        self.check_alive()?;
        Ok(match self.metrics().await {
            Some(text) => metric_sum(&text, "worldfleet_queue_depth{queue=\"intake.fifo\""),
            None => u64::MAX,
        })
    }

    /// Waits until the queues of every input stage have been empty for three reads in a row
    /// (the timer stages' queues never run dry), and with `world` until the world has settled
    /// too (`worldfleet_world_settled 1`: trades and player requests applied, every cell and
    /// region past its first ticks).
    pub async fn wait_for_drain(&mut self, deadline: Instant, world: bool) -> anyhow::Result<()> {
        let mut empty_reads = 0;
        while empty_reads < 3 {
            self.check_alive()?;
            anyhow::ensure!(
                Instant::now() < deadline,
                "the {} process did not drain in time; its log: {}",
                self.name,
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            empty_reads = match self.metrics().await {
                Some(text)
                    if input_backlog(&text) == 0
                        && (!world || metric_sum(&text, "worldfleet_world_settled ") == 1) =>
                {
                    empty_reads + 1
                }
                _ => 0,
            };
        }
        Ok(())
    }

    /// SIGTERM and wait for the process to stop its stages and close its store.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.metrics().await;
        self.end_life();
        let Some(mut child) = self.process.take() else {
            return Ok(());
        };
        let status = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .context("run kill -TERM")?;
        anyhow::ensure!(status.success(), "kill -TERM {} failed", child.id());
        let give_up = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                anyhow::ensure!(
                    status.success(),
                    "the {} process stopped with {status}; the end of its log:\n{}",
                    self.name,
                    tail(&self.log)
                );
                return Ok(());
            }
            if Instant::now() > give_up {
                child.kill()?;
                anyhow::bail!("the {} process did not stop within 60 s", self.name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        // A driver that failed part-way leaves no server behind.
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `GET path` over one HTTP/1.1 connection: the body of a 200 answer.
async fn get(address: SocketAddr, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let answer = String::from_utf8(answer).context("the answer is not UTF-8")?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .context("the answer has no body")?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.1 200"),
        "GET {path}: {}",
        head.lines().next().unwrap_or_default()
    );
    Ok(body.to_owned())
}

/// The sum of every sample of the series whose line starts with `prefix`.
pub fn metric_sum(text: &str, prefix: &str) -> u64 {
    text.lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}

/// Messages in the registry's input-stage queues, from a `/metrics` text.
pub fn input_backlog(text: &str) -> u64 {
    worldfleet_runtime::fleet::input_queues()
        .map(|queue| metric_sum(text, &format!("worldfleet_queue_depth{{queue=\"{queue}\"")))
        .sum()
}

/// The last 20 lines of `path`.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_is_summed_over_its_labels_and_nothing_else() {
        let text = "# HELP worldfleet_queue_depth x\n\
                    worldfleet_queue_depth{queue=\"intake.fifo\",state=\"visible\"} 3\n\
                    worldfleet_queue_depth{queue=\"intake.fifo\",state=\"in_flight\"} 4\n\
                    worldfleet_queue_depth{queue=\"classify.fifo\",state=\"visible\"} 5\n\
                    worldfleet_queue_depth_other 100\n";
        assert_eq!(
            metric_sum(text, "worldfleet_queue_depth{queue=\"intake.fifo\""),
            7
        );
        assert_eq!(metric_sum(text, "worldfleet_queue_depth{"), 12);
        assert_eq!(metric_sum(text, "absent"), 0);
    }

    #[test]
    fn the_backlog_counts_input_queues_not_timers_or_dead_letters() {
        let text = "worldfleet_queue_depth{queue=\"intake.fifo\",state=\"visible\"} 3\n\
                    worldfleet_queue_depth{queue=\"market.fifo\",state=\"in_flight\"} 4\n\
                    worldfleet_queue_depth{queue=\"ecology-tick\",state=\"delayed\"} 8\n\
                    worldfleet_queue_depth{queue=\"intake-dlq.fifo\",state=\"visible\"} 9\n";
        assert_eq!(input_backlog(text), 7);
    }
}
