//! The session runtime alone, on two real nodes — `cloud` and its child
//! `milan`, each with its own `redis-server` — embedded in one program:
//! `cargo run -p edge-sdk --example two_node_demo`.
//!
//! It shows the runtime without any other component: locks, commits, 208
//! replays, 503s and 307 redirects. The move of step 4 is made by this
//! program with the offloading manager's steps (in `edge-store`), and there is no
//! gateway (the client calls the function servers directly and strips the
//! gateway's `/function/<name>` prefix when it follows a redirect). The
//! whole system runs with `scripts/demo`.

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edge_sdk::runtime::{Config, serve};
use edge_sdk::{Json, Request, Session, blocking};
use edge_store::layout::lock::migration_token;
use edge_store::{CasOutcome, FenceOutcome, ImportOutcome};

/// Adds the body as an item to the session's cart and answers the cart.
/// An item named `slow` keeps the lock for a second.
#[blocking]
async fn cart_add(req: Request, session: &mut Session) -> edge_sdk::Result<Json<Vec<String>>> {
    let item = String::from_utf8(req.body().to_vec())?;
    let mut items = session.get_list("items").await?.unwrap_or_default();
    if item == "slow" {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    items.push(item);
    session.set_list("items", &items);
    Ok(Json(items))
}

struct Redis(Child, u16);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_redis(password: &str) -> Redis {
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--requirepass", password])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is needed: run scripts/demo, which installs it");
    let client = redis::Client::open(format!("redis://:{password}@127.0.0.1:{port}")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.get_connection().is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Redis(child, port)
}

fn step(n: u32, text: &str) {
    println!("\n\x1b[1m{n}. {text}\x1b[0m");
}

fn show(started: Instant, response: &reqwest::Response) {
    let headers: Vec<String> = [
        "retry-after",
        "location",
        "x-session-location",
        "x-session-original-status",
    ]
    .iter()
    .filter_map(|h| {
        response
            .headers()
            .get(*h)
            .map(|v| format!("{h}: {}", v.to_str().unwrap_or("?")))
    })
    .collect();
    println!(
        "   → {} in {:.1} ms {}",
        response.status(),
        started.elapsed().as_secs_f64() * 1000.0,
        headers.join(", ")
    );
}

#[tokio::main]
async fn main() {
    let (cloud_port, milan_port) = (free_port(), free_port());
    let hierarchy = serde_json::json!({
        "areaTypesIdentifiers": ["cloud", "city"],
        "hierarchy": [{ "areaName": "cloud",
            "mainLocation": { "openfaas_gateway": format!("http://127.0.0.1:{cloud_port}") },
            "areas": [{ "areaName": "milan",
                "mainLocation": { "openfaas_gateway": format!("http://127.0.0.1:{milan_port}") } }] }]
    })
    .to_string();
    println!(
        "Starting two nodes, each with its own redis-server: cloud (:{cloud_port}) and its child milan (:{milan_port})."
    );
    let mut redises = Vec::new();
    for (node, port) in [("cloud", cloud_port), ("milan", milan_port)] {
        let redis = start_redis(&format!("{node}-password"));
        let secrets = std::env::temp_dir().join(format!("edge-demo-{node}-{}", std::process::id()));
        std::fs::create_dir_all(&secrets).unwrap();
        std::fs::write(
            secrets.join("edge-redis-password"),
            format!("{node}-password"),
        )
        .unwrap();
        let env = [
            ("EDGE_LOCATION", node.to_string()),
            ("EDGE_FUNCTION", "cart".to_string()),
            ("EDGE_INFRASTRUCTURE", hierarchy.clone()),
            ("EDGE_REDIS_URL", format!("redis://127.0.0.1:{}", redis.1)),
            ("EDGE_SECRETS_DIR", secrets.display().to_string()),
        ];
        let config = Config::from_lookup(|name| {
            env.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
        })
        .expect("demo configuration");
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        tokio::spawn(serve(cart_add, config, listener, std::future::pending()));
        redises.push(redis);
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let milan = format!("http://127.0.0.1:{milan_port}/");
    let add = |url: &str, item: &str, id: &str| {
        client
            .post(url)
            .header("X-session", "alice-cart")
            .header("X-session-request-id", id)
            .body(item.to_string())
            .send()
    };

    step(
        1,
        "Add an apple to alice's cart in milan (blocking call, new request id)",
    );
    let id = uuid::Uuid::new_v4().to_string();
    let t = Instant::now();
    let response = add(&milan, "apple", &id).await.unwrap();
    show(t, &response);
    println!("   body: {}", response.text().await.unwrap());

    step(
        2,
        "Retry with the same request id: not run again, the original answer is replayed",
    );
    let t = Instant::now();
    let response = add(&milan, "apple", &id).await.unwrap();
    show(t, &response);
    println!("   body: {}", response.text().await.unwrap());

    step(
        3,
        "A slow call holds the session's lock; a concurrent writer waits in line and is served next",
    );
    let slow = tokio::spawn(add(&milan, "slow", &uuid::Uuid::new_v4().to_string()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    let response = add(&milan, "pear", &uuid::Uuid::new_v4().to_string())
        .await
        .unwrap();
    show(t, &response);
    let slow = slow.await.unwrap().unwrap();
    println!(
        "   the slow call then answered {}: {}",
        slow.status(),
        slow.text().await.unwrap()
    );

    step(
        4,
        "Move the session up to cloud (written by this demo as the offloading manager will do it)",
    );
    // The manager's steps, each one atomic script of the store: fence at
    // the source, export, import at the destination, the decision at the
    // proprietary node (milan), activation, deletion at the source.
    let open = |port: u16, password: &str, node: &str| {
        edge_store::Store::open(
            &format!("redis://127.0.0.1:{port}"),
            Some(password),
            Duration::from_secs(5),
            node,
        )
        .unwrap()
    };
    let milan_store = open(redises[1].1, "milan-password", "milan");
    let cloud_store = open(redises[0].1, "cloud-password", "cloud");
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let ttl = Duration::from_secs(60);
    let FenceOutcome::Fenced(fenced) = milan_store
        .fence_out("alice-cart", &migration_token(), ttl, now())
        .await
        .unwrap()
    else {
        panic!("alice-cart could not be fenced on milan");
    };
    let epoch = fenced.epoch;
    let exported = milan_store
        .export("alice-cart", epoch)
        .await
        .unwrap()
        .expect("fenced, so exported");
    let stored = cloud_store
        .import(
            "alice-cart",
            &migration_token(),
            ttl,
            "milan",
            epoch,
            now(),
            &exported,
        )
        .await
        .unwrap();
    assert_eq!(stored, ImportOutcome::Stored);
    let decided = milan_store
        .compare_and_set_location("alice-cart", ("milan", epoch - 1), ("cloud", epoch), now())
        .await
        .unwrap();
    assert_eq!(decided, CasOutcome::Done("cloud".into(), epoch));
    assert!(cloud_store.activate("alice-cart", epoch).await.unwrap());
    assert!(
        milan_store
            .finalize("alice-cart", epoch, "cloud", now())
            .await
            .unwrap()
    );
    println!("   milan keeps only the session's metadata, pointing at cloud");

    step(
        5,
        "Call milan again: 307 to cloud; the client follows and cloud serves the session",
    );
    let t = Instant::now();
    let response = add(&milan, "fig", &uuid::Uuid::new_v4().to_string())
        .await
        .unwrap();
    show(t, &response);
    let location = response.headers()["location"]
        .to_str()
        .unwrap()
        .replace("/function/cart", "");
    let followed = add(&location, "fig", &uuid::Uuid::new_v4().to_string())
        .await
        .unwrap();
    show(t, &followed);
    println!("   body: {}", followed.text().await.unwrap());

    println!(
        "\nDone. Both redis-servers are stopped on exit. The whole system, with the manager, the deployer and the devnet: scripts/demo."
    );
}
