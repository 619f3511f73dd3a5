//! The demo of the whole system, on real processes: a devnet of
//! `examples/hierarchy.json` (cloud → italy → milan, rome), the
//! session-offloading-manager and the examples deployed with the deployer,
//! and a scenario driven with the edge-sdk client. [`Demo::scenario`] returns what
//! each step saw; the `edge-demo` binary narrates it and the end-to-end
//! test asserts on it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use edge_sdk::client::Client;
use http::{HeaderMap, HeaderValue, Method};

/// The binaries the demo drives.
#[derive(Debug, Clone)]
pub struct Tools {
    /// `edge-devnet`.
    pub devnet: PathBuf,
    /// `deployer`.
    pub deployer: PathBuf,
    /// `offloading-manager`.
    pub manager: PathBuf,
}

impl Tools {
    /// The binaries in `dir` (a cargo target folder such as `target/debug`).
    pub fn in_dir(dir: &Path) -> anyhow::Result<Tools> {
        let find = |name: &str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                bail!(
                    "{} not found: build it first (cargo build -p edge-devnet -p deployer -p offloading-manager)",
                    path.display()
                )
            }
        };
        Ok(Tools {
            devnet: find("edge-devnet")?,
            deployer: find("deployer")?,
            manager: find("offloading-manager")?,
        })
    }
}

/// One step of the scenario: what was done and what came back.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What the step does.
    pub title: String,
    /// The HTTP status it ended with.
    pub status: u16,
    /// Redirects followed.
    pub redirects: usize,
    /// Where it was served, when a redirect said.
    pub served_by: Option<String>,
    /// How long it took.
    pub elapsed: Duration,
    /// The answer, shortened.
    pub detail: String,
}

/// The examples deployed, and the manager.
pub const EXAMPLES: [&str; 4] = [
    "cdn-upload",
    "cdn-download",
    "shopping-cart",
    "speech-to-text",
];
/// The manager's function name.
pub const MANAGER: &str = "session-offloading-manager";
/// The image name the manager's binary is registered under.
pub const MANAGER_IMAGE: &str = "ghcr.io/edge-sessions/session-offloading-manager:0.1.0";

/// Runs `program args…` and returns its standard output; a failure is an
/// error with both outputs.
pub fn run_tool(program: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", program.display()))?;
    if !output.status.success() {
        bail!(
            "{} {} failed:\n{}{}",
            program.display(),
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A running demo devnet; [`Demo::down`] (or dropping it) stops it.
pub struct Demo {
    dir: PathBuf,
    tools: Tools,
    gateways: serde_json::Value,
    state: serde_json::Value,
    token: String,
    stopped: bool,
}

impl Demo {
    /// Builds the examples, brings the devnet up in `dir` and deploys the
    /// manager and the examples on every level with the deployer; `say`
    /// narrates.
    pub fn set_up(
        repository: &Path,
        dir: &Path,
        tools: Tools,
        say: &mut dyn FnMut(&str),
    ) -> anyhow::Result<Demo> {
        let dir_text = dir.display().to_string();
        let devnet = |args: &[&str]| {
            let mut all = vec!["--dir", dir_text.as_str()];
            all.extend_from_slice(args);
            run_tool(&tools.devnet, &all)
        };
        devnet(&["down"])?;
        for example in EXAMPLES {
            say(&format!(
                "building {example} from the rust-edge template (edge-devnet build)"
            ));
            let stack = repository.join("examples").join(example).join("stack.yaml");
            devnet(&["build", "-f", &stack.display().to_string()])?;
        }
        devnet(&[
            "image-add",
            MANAGER_IMAGE,
            &tools.manager.display().to_string(),
        ])?;
        let started = Instant::now();
        devnet(&[
            "up",
            &repository
                .join("examples/hierarchy.json")
                .display()
                .to_string(),
        ])?;
        say(&format!(
            "devnet up in {:.0} ms: cloud → italy → milan, rome; a redis-server and a gateway each",
            started.elapsed().as_secs_f64() * 1000.0
        ));
        let hierarchy = dir.join("hierarchy.json");
        let hierarchy_text = hierarchy.display().to_string();
        let deploy = |function: &str, stack: &Path, level: &str| {
            run_tool(
                &tools.deployer,
                &[
                    "deploy",
                    function,
                    &hierarchy_text,
                    "-f",
                    &stack.display().to_string(),
                    "--inEvery",
                    level,
                ],
            )
        };
        for level in ["cloud", "country", "city"] {
            deploy(
                MANAGER,
                &repository.join("offloading-manager/stack.yaml"),
                level,
            )?;
            for example in EXAMPLES {
                deploy(
                    example,
                    &repository.join("examples").join(example).join("stack.yaml"),
                    level,
                )?;
            }
        }
        say(
            "deployed the manager (with its cron schedule) and the four examples on every level with the deployer",
        );
        let state: serde_json::Value =
            serde_json::from_str(&devnet(&["status", "--format", "json"])?)?;
        let gateways = serde_json::Value::Object(
            state["nodes"]
                .as_array()
                .context("status has no nodes")?
                .iter()
                .map(|n| {
                    (
                        n["name"].as_str().unwrap_or_default().to_string(),
                        n["gateway"].clone(),
                    )
                })
                .collect(),
        );
        let token = std::fs::read_to_string(dir.join("hierarchy.json.node-token"))
            .context("the deployer wrote no node token")?
            .trim()
            .to_string();
        Ok(Demo {
            dir: dir.to_path_buf(),
            tools,
            gateways,
            state,
            token,
            stopped: false,
        })
    }

    /// `<gateway of node>/function/<function><rest>`.
    pub fn url(&self, node: &str, function: &str, rest: &str) -> String {
        format!(
            "{}/function/{function}{rest}",
            self.gateways[node].as_str().unwrap_or_default()
        )
    }

    fn node(&self, name: &str) -> &serde_json::Value {
        self.state["nodes"]
            .as_array()
            .and_then(|nodes| nodes.iter().find(|n| n["name"] == name))
            .unwrap_or(&serde_json::Value::Null)
    }

    fn redis(&self, node: &str) -> anyhow::Result<redis::Connection> {
        let node = self.node(node);
        let url = format!(
            "redis://:{}@127.0.0.1:{}",
            node["redis_password"].as_str().unwrap_or_default(),
            node["redis_port"]
        );
        Ok(redis::Client::open(url)?.get_connection()?)
    }

    /// Sets a field of a node's configuration in its Redis.
    pub fn set_node_config(&self, node: &str, field: &str, value: &str) -> anyhow::Result<()> {
        let _: () = redis::cmd("HSET")
            .arg(edge_store::layout::node::CONFIG)
            .arg(field)
            .arg(value)
            .query(&mut self.redis(node)?)?;
        Ok(())
    }

    /// Waits until `session`'s lock is held on `node`.
    async fn wait_for_lock(&self, node: &str, session: &str) -> anyhow::Result<()> {
        let lock = edge_store::SessionKeys::new(session).lock().to_string();
        let mut redis = self.redis(node)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !redis::cmd("EXISTS").arg(&lock).query::<bool>(&mut redis)? {
            if Instant::now() > deadline {
                bail!("{session}'s lock was never taken on {node}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Stops the devnet.
    pub fn down(&mut self) -> anyhow::Result<()> {
        self.stopped = true;
        run_tool(
            &self.tools.devnet,
            &["--dir", &self.dir.display().to_string(), "down"],
        )
        .map(drop)
    }

    /// The scenario; `report` sees each step as it ends.
    pub async fn scenario(
        &self,
        wav: &[u8],
        report: &mut dyn FnMut(&Outcome),
    ) -> anyhow::Result<Vec<Outcome>> {
        let client = Client::new();
        let raw = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let mut outcomes = Vec::new();
        let mut record = |outcome: Outcome, outcomes: &mut Vec<Outcome>| {
            report(&outcome);
            outcomes.push(outcome);
        };
        let from = |answer: &edge_sdk::client::Answer, title: &str, elapsed: Duration| Outcome {
            title: title.to_string(),
            status: answer.status.as_u16(),
            redirects: answer.redirects,
            served_by: answer.location.clone(),
            elapsed,
            detail: shorten(&answer.text()),
        };
        let mut text_plain = HeaderMap::new();
        text_plain.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
        let upload = self.url("milan", "cdn-upload", "?file=hello.txt");
        let download = self.url("milan", "cdn-download", "?file=hello.txt");

        // Calls on milan wait in line for a locked session up to 15 s (the
        // functions read it within a few seconds; step 3 needs it).
        self.set_node_config("milan", "sessions_lock_wait_time", "15")?;

        // 1. A blocking upload in a city.
        let started = Instant::now();
        let first = client
            .call(
                Method::POST,
                &upload,
                "alice",
                "hello from milan".into(),
                &text_plain,
            )
            .await?;
        record(
            from(
                &first,
                "upload hello.txt to milan (cdn-upload, blocking)",
                started.elapsed(),
            ),
            &mut outcomes,
        );

        // 2. The same request id again: answered 208, the handler not run.
        let started = Instant::now();
        let again = raw
            .post(&upload)
            .header("X-session", "alice")
            .header("X-session-request-id", &first.request_id)
            .header("content-type", "text/plain")
            .body("hello from milan")
            .send()
            .await?;
        let status = again.status().as_u16();
        let original = again
            .headers()
            .get("x-session-original-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        let body = again.text().await?;
        record(
            Outcome {
                title: "the same upload again, same request id".into(),
                status,
                redirects: 0,
                served_by: None,
                elapsed: started.elapsed(),
                detail: format!("original status {original}, replayed: {}", shorten(&body)),
            },
            &mut outcomes,
        );

        // 3. A concurrent writer while speech-to-text holds the session's
        // lock: it waits in line and is handed the lock when the
        // transcription commits.
        let speech_url = self.url("milan", "speech-to-text", "");
        let speech_client = &client;
        let speech = async move {
            let started = Instant::now();
            let answer = speech_client
                .call(
                    Method::POST,
                    &speech_url,
                    "alice",
                    wav.to_vec().into(),
                    &HeaderMap::new(),
                )
                .await;
            (answer, started.elapsed())
        };
        let competitor = async {
            // Once speech-to-text holds the session's lock.
            self.wait_for_lock("milan", "alice").await?;
            let started = Instant::now();
            let answer = raw
                .post(self.url("milan", "cdn-upload", "?file=concurrent.txt"))
                .header("X-session", "alice")
                .header("X-session-request-id", new_request_id())
                .body("a concurrent write")
                .send()
                .await?;
            // Timed here: the join below also waits for the speech call.
            let elapsed = started.elapsed();
            anyhow::Ok((answer, elapsed))
        };
        let ((speech, speech_elapsed), competitor) = tokio::join!(speech, competitor);
        let (competitor, competitor_elapsed) = competitor?;
        let retry_after = competitor
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        record(
            Outcome {
                title:
                    "a concurrent writer while speech-to-text holds alice's lock (waits in line)"
                        .into(),
                status: competitor.status().as_u16(),
                redirects: 0,
                served_by: None,
                elapsed: competitor_elapsed,
                detail: if retry_after == "-" {
                    shorten(&competitor.text().await?)
                } else {
                    format!(
                        "Retry-After: {retry_after}; {}",
                        shorten(&competitor.text().await?)
                    )
                },
            },
            &mut outcomes,
        );
        record(
            from(
                &speech?,
                "speech-to-text of a WAV (pocketsphinx), appended to alice's history",
                speech_elapsed,
            ),
            &mut outcomes,
        );

        // 4. A non-blocking download.
        let started = Instant::now();
        let downloaded = client.get(&download, "alice").await?;
        record(
            from(
                &downloaded,
                "download hello.txt from milan (cdn-download, non-blocking)",
                started.elapsed(),
            ),
            &mut outcomes,
        );

        // 5. A forced offload: the session moves up.
        let started = Instant::now();
        let offload = raw
            .post(self.url("milan", MANAGER, "?command=force-offload"))
            .header("X-forced-session", "alice")
            .header("X-edge-token", &self.token)
            .send()
            .await?;
        let status = offload.status().as_u16();
        record(
            Outcome {
                title: "force-offload alice from milan (session-offloading-manager)".into(),
                status,
                redirects: 0,
                served_by: None,
                elapsed: started.elapsed(),
                detail: shorten(&offload.text().await?),
            },
            &mut outcomes,
        );

        // 6. A new client calls the city: 307 to where the session is now.
        let newcomer = Client::new();
        let started = Instant::now();
        let above = newcomer.get(&download, "alice").await?;
        record(
            from(
                &above,
                "download from milan again: redirected, served above",
                started.elapsed(),
            ),
            &mut outcomes,
        );

        // 7. Onload back down.
        let started = Instant::now();
        let onload = raw
            .post(self.url("milan", MANAGER, "?command=force-onload"))
            .header("X-edge-token", &self.token)
            .send()
            .await?;
        let status = onload.status().as_u16();
        record(
            Outcome {
                title: "force-onload at milan: the session comes back down".into(),
                status,
                redirects: 0,
                served_by: None,
                elapsed: started.elapsed(),
                detail: shorten(&onload.text().await?),
            },
            &mut outcomes,
        );
        let started = Instant::now();
        let home = Client::new().get(&download, "alice").await?;
        record(
            from(
                &home,
                "download from milan: served in milan again",
                started.elapsed(),
            ),
            &mut outcomes,
        );

        // 8. An expired session is collected.
        let bob_upload = self.url("rome", "cdn-upload", "?file=old.txt");
        client
            .call(
                Method::POST,
                &bob_upload,
                "bob",
                "soon forgotten".into(),
                &text_plain,
            )
            .await?;
        self.set_node_config("rome", "sessions_data_expiration_time", "1")?;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let started = Instant::now();
        let collected = raw
            .post(self.url(
                "rome",
                MANAGER,
                "?command=garbage-collector&deletePolicy=expiration",
            ))
            .send()
            .await?;
        let status = collected.status().as_u16();
        record(
            Outcome {
                title:
                    "garbage-collector at rome, bob idle past sessions_data_expiration_time (1 s)"
                        .into(),
                status,
                redirects: 0,
                served_by: None,
                elapsed: started.elapsed(),
                detail: format!("sessions deleted: {}", collected.text().await?.trim()),
            },
            &mut outcomes,
        );
        let started = Instant::now();
        let gone = client
            .get(&self.url("rome", "cdn-download", "?file=old.txt"), "bob")
            .await?;
        record(
            from(&gone, "download bob's old.txt: gone", started.elapsed()),
            &mut outcomes,
        );
        Ok(outcomes)
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.down();
        }
    }
}

fn new_request_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (nanos >> 64) as u32,
        (nanos >> 48) as u16,
        (nanos >> 36) as u16 & 0xfff,
        (nanos >> 24) as u16 & 0xfff,
        nanos as u64 & 0xffff_ffff_ffff
    )
}

fn shorten(text: &str) -> String {
    let text = text.trim().replace('\n', " ");
    if text.chars().count() > 100 {
        format!("{}…", text.chars().take(100).collect::<String>())
    } else {
        text
    }
}

/// A WAV of `text` spoken by espeak-ng.
pub fn spoken(text: &str) -> anyhow::Result<Vec<u8>> {
    let output = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "130", "--stdout", text])
        .output()
        .context("espeak-ng is needed for the speech step (scripts/ensure-deps installs it)")?;
    if !output.status.success() {
        bail!(
            "espeak-ng failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output.stdout)
}
