//! Test fixtures: an edge-sdk server for a handler on `127.0.0.1:0`, on top
//! of the workspace's `test-support` (real redis-server processes).
#![allow(dead_code)]

use std::net::SocketAddr;

use edge_sdk::handler::Handler;
use edge_sdk::runtime::{Config, serve};
use tokio::sync::oneshot;

pub use test_support::{RedisServer, tempdir};

/// A hierarchy with `nodes` (name, gateway) as a chain root → … → leaf,
/// levels named level0, level1, ….
pub fn chain_hierarchy(nodes: &[(&str, &str)]) -> String {
    fn area(nodes: &[(&str, &str)]) -> serde_json::Value {
        let (name, gateway) = nodes[0];
        let children = if nodes.len() > 1 {
            vec![area(&nodes[1..])]
        } else {
            vec![]
        };
        serde_json::json!({ "areaName": name, "mainLocation": { "openfaas_gateway": gateway }, "areas": children })
    }
    let levels: Vec<String> = (0..nodes.len()).map(|i| format!("level{i}")).collect();
    serde_json::json!({ "areaTypesIdentifiers": levels, "hierarchy": [area(nodes)] }).to_string()
}

/// Options for [`TestNode::start`].
pub struct NodeOptions<'a> {
    pub location: &'a str,
    pub function: &'a str,
    pub infrastructure: String,
    pub extra_env: Vec<(&'a str, String)>,
}

impl<'a> NodeOptions<'a> {
    /// Node `location` of the default two-node chain `cloud` → `edge`.
    pub fn edge_named(location: &'a str) -> NodeOptions<'a> {
        NodeOptions {
            location,
            ..NodeOptions::edge()
        }
    }

    /// One node named `edge` in a two-node chain `cloud` → `edge`.
    pub fn edge() -> NodeOptions<'a> {
        NodeOptions {
            location: "edge",
            function: "fn",
            infrastructure: chain_hierarchy(&[
                ("cloud", "http://cloud.test:8080"),
                ("edge", "http://edge.test:8080"),
            ]),
            extra_env: vec![],
        }
    }
}

/// An edge-sdk server serving one handler in this process.
pub struct TestNode {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<edge_sdk::Result<()>>>,
}

impl TestNode {
    pub async fn start<H: Handler<K>, K: 'static>(
        handler: H,
        redis: &RedisServer,
        options: NodeOptions<'_>,
    ) -> TestNode {
        let secrets = tempdir();
        if let Some(password) = &redis.password {
            std::fs::write(secrets.join("edge-redis-password"), format!("{password}\n")).unwrap();
        }
        let mut env: Vec<(String, String)> = vec![
            ("EDGE_LOCATION".into(), options.location.into()),
            ("EDGE_FUNCTION".into(), options.function.into()),
            ("EDGE_INFRASTRUCTURE".into(), options.infrastructure),
            ("EDGE_REDIS_URL".into(), redis.url()),
            ("EDGE_SECRETS_DIR".into(), secrets.display().to_string()),
            ("EDGE_REDIS_TIMEOUT_MS".into(), "1000".into()),
        ];
        for (name, value) in options.extra_env {
            env.retain(|(n, _)| n != name);
            env.push((name.to_string(), value));
        }
        let config =
            Config::from_lookup(|name| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()))
                .expect("test configuration");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(handler, config, listener, async move {
            let _ = stopped.await;
        }));
        TestNode {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Signals shutdown and waits for the server to drain.
    pub async fn stop(mut self) -> edge_sdk::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.expect("server task")
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// An HTTP client that never follows redirects.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A fresh request id.
pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
