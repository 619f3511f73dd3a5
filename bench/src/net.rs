//! The network an experiment runs on: a two-level devnet (`iowa`, the
//! cloud, above `milan`, the edge) whose link has a profile, clients
//! attached to `milan` through a LAN access link, and the manager and the
//! examples deployed with the deployer, the edge's functions CPU-limited.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use edge_demo::{MANAGER, MANAGER_IMAGE, Tools, run_tool};
use edge_devnet::link::LinkProfile;
use edge_sdk::client::{Client, ClientOptions};
use serde::Deserialize;

/// The edge node, where clients are attached.
pub const EDGE: &str = "milan";
/// The cloud node, the edge's parent.
pub const CLOUD: &str = "iowa";
/// The examples the experiments call.
pub const FUNCTIONS: [&str; 3] = ["cdn-upload", "cdn-download", "speech-to-text"];
/// The CPU limit of the edge's functions (thesis 7.4.3: `limits: cpu: 500m`).
pub const EDGE_CPU: &str = "500m";
/// The clients' access link (`lan`).
pub const ACCESS: Profile = Profile {
    name: "lan",
    link: LinkProfile::lan(),
    thesis_redirect: "40–80 ms",
    thesis_offload: (0.2, 0.1),
};

const HIERARCHY: &str = r#"{
  "areaTypesIdentifiers": ["cloud", "city"],
  "hierarchy": [
    { "areaName": "iowa", "areas": [ { "areaName": "milan", "areas": [] } ] }
  ]
}
"#;

/// A link profile of the experiments, with what the thesis measured on its
/// link of that kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// `lan` or `cloud`.
    pub name: &'static str,
    /// The emulated link, one way.
    pub link: LinkProfile,
    /// The thesis's redirected call (7.3.1).
    pub thesis_redirect: &'static str,
    /// The thesis's offload time (7.3.3): seconds, and seconds per MB.
    pub thesis_offload: (f64, f64),
}

impl Profile {
    /// 1 ms round trip, 1 Gbit/s; the thesis's LAN experiments.
    pub const LAN: Profile = ACCESS;
    /// 110 ms round trip, 160 Mbit/s: the thesis's Milan → Iowa link.
    pub const CLOUD: Profile = Profile {
        name: "cloud",
        link: LinkProfile::cloud(),
        thesis_redirect: "≈350 ms",
        thesis_offload: (2.0, 0.4),
    };

    /// One-way latency, seconds.
    pub fn one_way(&self) -> f64 {
        self.link.one_way_latency.as_secs_f64()
    }

    /// Bandwidth, bits per second (infinite when unlimited).
    pub fn bandwidth(&self) -> f64 {
        self.link
            .bandwidth_bits_per_sec
            .map_or(f64::INFINITY, |bits| bits as f64)
    }

    /// Round-trip time, seconds.
    pub fn rtt(&self) -> f64 {
        2.0 * self.one_way()
    }

    /// The physical limit of moving `bytes` over the link with one
    /// request–answer exchange: a round trip plus the transmission time.
    pub fn limit(&self, bytes: f64) -> f64 {
        self.rtt() + bytes * 8.0 / self.bandwidth()
    }

    /// The thesis's offload time for a session of `bytes`, seconds.
    pub fn thesis_offload_time(&self, bytes: f64) -> f64 {
        self.thesis_offload.0 + self.thesis_offload.1 * bytes / 1e6
    }
}

#[derive(Debug, Deserialize)]
struct Status {
    nodes: Vec<NodeStatus>,
}

#[derive(Debug, Deserialize)]
struct NodeStatus {
    name: String,
    gateway: String,
    password: String,
    redis_port: u16,
    redis_password: String,
    #[serde(default)]
    clients: HashMap<String, String>,
}

/// What crossed one link (`GET /system/links`).
#[derive(Debug, Clone, Deserialize)]
pub struct LinkBytes {
    /// The lower end.
    pub node: String,
    /// The upper end, or `clients`.
    pub peer: String,
    /// Bytes from `node` to `peer`.
    pub bytes_up: u64,
    /// Bytes from `peer` to `node`.
    pub bytes_down: u64,
}

/// A running network.
pub struct Net {
    /// Its profile.
    pub profile: Profile,
    tools: Tools,
    dir: PathBuf,
    nodes: Vec<NodeStatus>,
    token: String,
    http: reqwest::Client,
    up: bool,
}

/// Builds the examples (release when this program is) and registers the
/// manager, once per devnet folder.
pub fn build_functions(repository: &Path, tools: &Tools, dir: &Path) -> anyhow::Result<()> {
    let dir_text = dir.display().to_string();
    std::fs::create_dir_all(dir)?;
    for function in FUNCTIONS {
        let stack = repository
            .join("examples")
            .join(function)
            .join("stack.yaml");
        let mut args = vec![
            "--dir",
            dir_text.as_str(),
            "build",
            "-f",
            stack.to_str().context("a UTF-8 path")?,
        ];
        if !cfg!(debug_assertions) {
            args.push("--release");
        }
        run_tool(&tools.devnet, &args)?;
    }
    run_tool(
        &tools.devnet,
        &[
            "--dir",
            &dir_text,
            "image-add",
            MANAGER_IMAGE,
            tools.manager.to_str().context("a UTF-8 path")?,
        ],
    )?;
    Ok(())
}

impl Net {
    /// Brings the network up in `dir` (where [`build_functions`] ran) and
    /// deploys the manager and the examples.
    pub fn up(tools: &Tools, dir: &Path, profile: Profile) -> anyhow::Result<Net> {
        let dir_text = dir.display().to_string();
        let devnet = |args: &[&str]| {
            let mut all = vec!["--dir", dir_text.as_str()];
            all.extend_from_slice(args);
            run_tool(&tools.devnet, &all)
        };
        devnet(&["down"])?;
        let hierarchy = dir.join("bench-hierarchy.json");
        std::fs::write(&hierarchy, HIERARCHY)?;
        devnet(&[
            "up",
            hierarchy.to_str().context("a UTF-8 path")?,
            "--link",
            profile.name,
            "--access",
            &ACCESS.link.to_string(),
        ])?;
        let resolved = dir.join("hierarchy.json");
        let resolved = resolved.to_str().context("a UTF-8 path")?;
        let stacks = dir.join("stacks");
        std::fs::create_dir_all(&stacks)?;
        let deploy = |function: &str, image: &str, level: &str, cpu: Option<&str>| {
            let limits = cpu
                .map(|cpu| format!("    limits:\n      cpu: {cpu}\n"))
                .unwrap_or_default();
            let stack = stacks.join(format!("{function}-{level}.yaml"));
            std::fs::write(
                &stack,
                format!(
                    "version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n  {function}:\n    image: {image}\n{limits}"
                ),
            )?;
            run_tool(
                &tools.deployer,
                &[
                    "deploy",
                    function,
                    resolved,
                    "-f",
                    stack.to_str().context("a UTF-8 path")?,
                    "--inEvery",
                    level,
                ],
            )
        };
        for level in ["cloud", "city"] {
            deploy(MANAGER, MANAGER_IMAGE, level, None)?;
            let cpu = (level == "city").then_some(EDGE_CPU);
            for function in FUNCTIONS {
                deploy(
                    function,
                    &format!("edge-examples/{function}:0.1.0"),
                    level,
                    cpu,
                )?;
            }
        }
        let status: Status = serde_json::from_str(&devnet(&["status", "--format", "json"])?)?;
        let token = std::fs::read_to_string(dir.join("hierarchy.json.node-token"))
            .context("the deployer wrote no node token")?
            .trim()
            .to_string();
        let net = Net {
            profile,
            tools: tools.clone(),
            dir: dir.to_path_buf(),
            nodes: status.nodes,
            token,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(120))
                .build()?,
            up: true,
        };
        if net.client_gateway(EDGE).is_none() {
            bail!("the devnet lists no client addresses: was it started with --access?");
        }
        Ok(net)
    }

    fn node(&self, name: &str) -> anyhow::Result<&NodeStatus> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .with_context(|| format!("no node {name}"))
    }

    fn client_gateway(&self, node: &str) -> Option<&str> {
        self.nodes
            .iter()
            .find(|n| n.name == EDGE)?
            .clients
            .get(node)
            .map(String::as_str)
    }

    /// `function`'s URL on `node` as a client attached to the edge reaches
    /// it (access link, then the tree path).
    pub fn url(&self, node: &str, function: &str, rest: &str) -> String {
        format!(
            "{}/function/{function}{rest}",
            self.client_gateway(node).unwrap_or_default()
        )
    }

    /// A client attached to the edge: it follows redirects through its own
    /// access link. `attempts: 1` shows every 503 instead of retrying.
    pub fn client(&self, attempts: u32) -> Client {
        let mut options = ClientOptions::default();
        options.attempts = attempts;
        options.timeout = Duration::from_secs(120);
        for node in [EDGE, CLOUD] {
            if let Some(url) = self.client_gateway(node) {
                options
                    .node_origins
                    .insert(node.to_string(), url.to_string());
            }
        }
        Client::with_options(options)
    }

    /// A raw HTTP client that follows nothing.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Calls the manager of `node` as its operator would, on the node itself
    /// (no emulated link): `?command=…`, the node token, extra headers.
    pub async fn manager(
        &self,
        node: &str,
        query: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(u16, String, Duration)> {
        let url = format!("{}/function/{MANAGER}?{query}", self.node(node)?.gateway);
        let mut request = self.http.post(&url).header("X-edge-token", &self.token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let started = Instant::now();
        let response = request.send().await.with_context(|| url.clone())?;
        let status = response.status().as_u16();
        let body = response.text().await?;
        Ok((status, body, started.elapsed()))
    }

    /// Offloads `session` from the edge to the cloud; the time from the
    /// first request to "migration ended". A session whose lock a call
    /// holds is answered 503: the request is repeated (every 10 ms, for
    /// up to 30 s), as an operator or the policy's next run would.
    pub async fn offload(&self, session: &str) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            let (status, body, _) = self
                .manager(
                    EDGE,
                    "command=force-offload",
                    &[("X-forced-session", session)],
                )
                .await?;
            match status {
                200 => return Ok(started.elapsed()),
                503 if started.elapsed() < Duration::from_secs(30) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                _ => bail!("force-offload of {session}: {status} {body}"),
            }
        }
    }

    /// What crossed each link so far.
    pub async fn links(&self) -> anyhow::Result<Vec<LinkBytes>> {
        let node = self.node(EDGE)?;
        let response = self
            .http
            .get(format!("{}/system/links", node.gateway))
            .basic_auth("admin", Some(&node.password))
            .send()
            .await?
            .error_for_status()?;
        Ok(serde_json::from_slice(&response.bytes().await?)?)
    }

    fn redis(&self, node: &str) -> anyhow::Result<redis::Connection> {
        let node = self.node(node)?;
        let url = format!(
            "redis://:{}@127.0.0.1:{}",
            node.redis_password, node.redis_port
        );
        Ok(redis::Client::open(url)?.get_connection()?)
    }

    /// Sets (or with `None` removes) a field of a node's configuration.
    pub fn set_config(&self, node: &str, field: &str, value: Option<&str>) -> anyhow::Result<()> {
        let mut redis = self.redis(node)?;
        match value {
            Some(value) => redis::cmd("HSET")
                .arg(edge_store::layout::node::CONFIG)
                .arg(field)
                .arg(value)
                .query::<()>(&mut redis)?,
            None => redis::cmd("HDEL")
                .arg(edge_store::layout::node::CONFIG)
                .arg(field)
                .query::<()>(&mut redis)?,
        }
        Ok(())
    }

    /// A node's Redis `used_memory`.
    pub fn used_memory(&self, node: &str) -> anyhow::Result<u64> {
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query(&mut self.redis(node)?)?;
        info.lines()
            .find_map(|line| line.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .context("INFO memory has no used_memory")
    }

    /// Stops the devnet.
    pub fn down(&mut self) -> anyhow::Result<()> {
        self.up = false;
        run_tool(
            &self.tools.devnet,
            &["--dir", &self.dir.display().to_string(), "down"],
        )
        .map(drop)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if self.up {
            let _ = self.down();
        }
    }
}
