//! The devnet end to end: a 3-level, 7-node hierarchy brought up for real
//! (a redis-server and a gateway per node), a function built from the
//! rust-edge template with `edge-devnet build`, deployed through the
//! gateway API with requests shaped as faas-cli sends them, called through
//! `/function/`, restarted, updated, scheduled by the cron connector, and
//! everything gone after `down`.

mod common;

use common::{repository, run_devnet, unique_name};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use test_support::wait_until;

const HIERARCHY: &str = r#"{"areaTypesIdentifiers":["country","city","district"],
 "hierarchy":[{"areaName":"italy","areas":[
   {"areaName":"milan","areas":[{"areaName":"m1"},{"areaName":"m2"}]},
   {"areaName":"rome","areas":[{"areaName":"r1"},{"areaName":"r2"}]}]}]}"#;

/// A project with the probe function, built once per test run; returns the
/// project folder and the devnet folder holding the image registry.
fn built_probe() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        // Inside the repository, so that build finds template/ and edge-sdk.
        let root = repository().join("target/devnet-tests").join(unique_name());
        let project = root.join("project");
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/probe-project"),
            &project,
        );
        let dir = root.join("net");
        let output = run_devnet(
            &dir,
            &[
                "build",
                "-f",
                &project.join("stack.yaml").display().to_string(),
            ],
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains("devnet-probe:test"));
        (project, dir)
    })
}

fn rand_seed() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// A devnet of its own (sharing the built images), stopped on drop.
struct Devnet {
    dir: PathBuf,
    state: Value,
    hierarchy: Value,
}

impl Devnet {
    fn up() -> Devnet {
        let (_, built) = built_probe();
        let dir = built
            .parent()
            .unwrap()
            .join(format!("net-{}", unique_name()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(built.join("images.json"), dir.join("images.json")).unwrap();
        let hierarchy_file = dir.join("input.json");
        std::fs::write(&hierarchy_file, HIERARCHY).unwrap();
        let started = Instant::now();
        let output = run_devnet(&dir, &["up", &hierarchy_file.display().to_string()]);
        eprintln!(
            "7 nodes up in {:?} (edge-devnet up, wall clock)",
            started.elapsed()
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains("7 nodes"));
        let state: Value =
            serde_json::from_slice(&run_devnet(&dir, &["status", "--format", "json"]).stdout)
                .unwrap();
        let hierarchy: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("hierarchy.json")).unwrap())
                .unwrap();
        Devnet {
            dir,
            state,
            hierarchy,
        }
    }

    fn node(&self, name: &str) -> &Value {
        self.state["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .unwrap()
    }

    fn gateway(&self, name: &str) -> String {
        self.node(name)["gateway"].as_str().unwrap().to_string()
    }

    fn password(&self, name: &str) -> String {
        self.node(name)["password"].as_str().unwrap().to_string()
    }

    fn status(&self) -> Value {
        serde_json::from_slice(&run_devnet(&self.dir, &["status", "--format", "json"]).stdout)
            .unwrap()
    }

    fn function_state(&self, node: &str, function: &str) -> Option<Value> {
        let state = self.status();
        let nodes = state["nodes"].as_array().unwrap().clone();
        let node = nodes.into_iter().find(|n| n["name"] == node)?;
        node["functions"]
            .as_array()?
            .iter()
            .find(|f| f["name"] == function)
            .cloned()
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_edge-devnet"))
            .arg("--dir")
            .arg(&self.dir)
            .arg("down")
            .output();
    }
}

fn system(
    client: &reqwest::Client,
    devnet: &Devnet,
    node: &str,
    method: reqwest::Method,
    path: &str,
) -> reqwest::RequestBuilder {
    client
        .request(method, format!("{}{path}", devnet.gateway(node)))
        .basic_auth("admin", Some(devnet.password(node)))
}

/// A deployment as older faas-cli sends it (nil maps as null, `network`).
fn faas_cli_deployment(
    name: &str,
    image: &str,
    env: Value,
    secrets: Value,
    annotations: Value,
) -> Value {
    json!({
        "service": name, "image": image, "network": "func_functions", "envProcess": "",
        "envVars": env, "constraints": null, "secrets": secrets,
        "labels": {}, "annotations": annotations, "limits": null, "requests": null
    })
}

fn pid_alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_deploy_run_restart_update_and_stop_like_openfaas() {
    let devnet = Devnet::up();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let m1 = "m1";

    // The resolved hierarchy names every node's gateway, Redis and passwords.
    let text = devnet.hierarchy.to_string();
    for node in ["italy", "milan", "m1", "m2", "rome", "r1", "r2"] {
        assert!(
            text.contains(&devnet.gateway(node)),
            "{node}'s gateway missing"
        );
    }
    assert!(
        client
            .get(format!("{}/healthz", devnet.gateway(m1)))
            .send()
            .await
            .unwrap()
            .status()
            == 200
    );
    let info: Value = system(&client, &devnet, m1, reqwest::Method::GET, "/system/info")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["provider"]["provider"], "edge-devnet");

    // Basic auth on /system/*.
    let anonymous = client
        .get(format!("{}/system/functions", devnet.gateway(m1)))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = client
        .get(format!("{}/system/functions", devnet.gateway(m1)))
        .basic_auth("admin", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    // Secrets, created as faas-cli does (value, or base64 rawValue), and updated.
    let redis_password = devnet.node(m1)["redis_password"]
        .as_str()
        .unwrap()
        .to_string();
    let created = system(&client, &devnet, m1, reqwest::Method::POST, "/system/secrets")
        .json(&json!({"name": "edge-redis-password", "value": redis_password, "namespace": "openfaas-fn"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let again = system(
        &client,
        &devnet,
        m1,
        reqwest::Method::POST,
        "/system/secrets",
    )
    .json(&json!({"name": "edge-redis-password", "value": "x"}))
    .send()
    .await
    .unwrap();
    assert_eq!(again.status(), 409);
    let raw = system(
        &client,
        &devnet,
        m1,
        reqwest::Method::POST,
        "/system/secrets",
    )
    .json(&json!({"name": "edge-node-token", "rawValue": "dG9rZW4tb25l"}))
    .send()
    .await
    .unwrap();
    assert_eq!(raw.status(), 201);
    let listed: Value = system(
        &client,
        &devnet,
        m1,
        reqwest::Method::GET,
        "/system/secrets",
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        listed,
        json!([{"name": "edge-node-token"}, {"name": "edge-redis-password"}])
    );

    // Deploy: unknown image → 400 naming it; unknown secret → 400; then PUT → 404, POST → 202.
    let env = json!({
        "EDGE_LOCATION": "m1", "EDGE_FUNCTION": "probe",
        "EDGE_INFRASTRUCTURE": HIERARCHY, "EDGE_REDIS_URL": format!("redis://127.0.0.1:{}", devnet.node(m1)["redis_port"])
    });
    let secrets = json!(["edge-redis-password", "edge-node-token"]);
    let unknown_image = system(
        &client,
        &devnet,
        m1,
        reqwest::Method::POST,
        "/system/functions",
    )
    .json(&faas_cli_deployment(
        "probe",
        "nobody/never-built:1",
        env.clone(),
        secrets.clone(),
        json!(null),
    ))
    .send()
    .await
    .unwrap();
    assert_eq!(unknown_image.status(), 400);
    assert!(
        unknown_image
            .text()
            .await
            .unwrap()
            .contains("never-built:1")
    );
    let unknown_secret = system(
        &client,
        &devnet,
        m1,
        reqwest::Method::POST,
        "/system/functions",
    )
    .json(&faas_cli_deployment(
        "probe",
        "devnet-probe:test",
        env.clone(),
        json!(["nope"]),
        json!(null),
    ))
    .send()
    .await
    .unwrap();
    assert_eq!(unknown_secret.status(), 400);
    let update_missing = system(
        &client,
        &devnet,
        m1,
        reqwest::Method::PUT,
        "/system/functions",
    )
    .json(&faas_cli_deployment(
        "probe",
        "devnet-probe:test",
        env.clone(),
        secrets.clone(),
        json!(null),
    ))
    .send()
    .await
    .unwrap();
    assert_eq!(update_missing.status(), 404);
    let deployed = system(
        &client,
        &devnet,
        m1,
        reqwest::Method::POST,
        "/system/functions",
    )
    .json(&faas_cli_deployment(
        "probe",
        "devnet-probe:test",
        env.clone(),
        secrets.clone(),
        json!(null),
    ))
    .send()
    .await
    .unwrap();
    assert_eq!(deployed.status(), 202);

    // Calls through /function/: method, path, query, headers, body forwarded.
    let call = |path: &str| {
        client
            .post(format!("{}/function/probe{path}", devnet.gateway(m1)))
            .header("X-session", "devnet")
            .header("X-session-request-id", uuid_v4())
            .body("payload")
    };
    let answer = call("/?x=1").send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "probe on m1 call 1");
    assert_eq!(
        call("").send().await.unwrap().text().await.unwrap(),
        "probe on m1 call 2"
    );
    // A 307 from the function reaches the client unfollowed.
    let redirect = call("/redirect").send().await.unwrap();
    assert_eq!(redirect.status(), 307);
    assert_eq!(
        redirect.headers()["location"],
        "http://elsewhere.invalid/moved"
    );
    // Secrets are files the function reads.
    let secrets_seen = call("/secrets").send().await.unwrap().text().await.unwrap();
    assert_eq!(
        secrets_seen,
        format!("location=m1\nedge-redis-password={redis_password}\nedge-node-token=token-one\n")
    );
    // A function that is not deployed here is a 404.
    let elsewhere = client
        .post(format!("{}/function/probe", devnet.gateway("m2")))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 404);

    // The gateway lists it, running.
    let status: Value = system(
        &client,
        &devnet,
        m1,
        reqwest::Method::GET,
        "/system/function/probe",
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(status["image"], "devnet-probe:test");
    assert_eq!(status["availableReplicas"], 1);
    assert_eq!(status["invocationCount"], 4.0);

    // A crashed function is restarted.
    let mut pid = 0;
    wait_until(
        Duration::from_secs(10),
        "the state file to show the function's pid",
        || {
            pid = devnet
                .function_state(m1, "probe")
                .and_then(|f| f["pid"].as_u64())
                .unwrap_or(0);
            pid != 0
        },
    );
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    wait_until(
        Duration::from_secs(20),
        "the function to be restarted",
        || {
            devnet
                .function_state(m1, "probe")
                .is_some_and(|f| f["restarts"] == 1 && f["pid"].as_u64().is_some_and(|p| p != pid))
        },
    );
    assert_eq!(
        call("").send().await.unwrap().text().await.unwrap(),
        "probe on m1 call 3"
    );

    // An update restarts it with the new environment; a secret update reaches its files.
    let updated_secret = system(
        &client,
        &devnet,
        m1,
        reqwest::Method::PUT,
        "/system/secrets",
    )
    .json(&json!({"name": "edge-node-token", "value": "token-two"}))
    .send()
    .await
    .unwrap();
    assert_eq!(updated_secret.status(), 200);
    let mut before = 0;
    wait_until(
        Duration::from_secs(10),
        "the restarted function's pid",
        || {
            before = devnet
                .function_state(m1, "probe")
                .and_then(|f| f["pid"].as_u64())
                .unwrap_or(0);
            before != 0
        },
    );
    let mut new_env = env.clone();
    new_env["EDGE_LOCATION"] = json!("m1");
    new_env["RUST_LOG"] = json!("debug");
    let update = system(
        &client,
        &devnet,
        m1,
        reqwest::Method::PUT,
        "/system/functions",
    )
    .json(&faas_cli_deployment(
        "probe",
        "devnet-probe:test",
        new_env,
        secrets.clone(),
        json!(null),
    ))
    .send()
    .await
    .unwrap();
    assert_eq!(update.status(), 202);
    wait_until(
        Duration::from_secs(20),
        "the update to restart the function",
        || {
            devnet
                .function_state(m1, "probe")
                .and_then(|f| f["pid"].as_u64())
                .is_some_and(|p| p != before)
        },
    );
    assert!(!pid_alive(before));
    let secrets_seen = call("/secrets").send().await.unwrap().text().await.unwrap();
    assert!(
        secrets_seen.ends_with("edge-node-token=token-two\n"),
        "{secrets_seen}"
    );

    // The cron connector invokes annotated functions on schedule.
    let cron = system(
        &client,
        &devnet,
        m1,
        reqwest::Method::POST,
        "/system/functions",
    )
    .json(&faas_cli_deployment(
        "ticker",
        "devnet-probe:test",
        env.clone(),
        secrets.clone(),
        json!({"topic": "cron-function", "schedule": "*/1 * * * * *"}),
    ))
    .send()
    .await
    .unwrap();
    assert_eq!(cron.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ticker: Value = system(
            &client,
            &devnet,
            m1,
            reqwest::Method::GET,
            "/system/function/ticker",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        if ticker["invocationCount"].as_f64().unwrap() >= 2.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cron function was not invoked twice in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // (The probe answers the cron calls 400, having no session header: the
    // invocation count is what shows they went through /function/ticker.)

    // Delete stops it.
    let mut ticker_pid = 0;
    wait_until(Duration::from_secs(10), "the cron function's pid", || {
        ticker_pid = devnet
            .function_state(m1, "ticker")
            .and_then(|f| f["pid"].as_u64())
            .unwrap_or(0);
        ticker_pid != 0
    });
    let deleted = system(
        &client,
        &devnet,
        m1,
        reqwest::Method::DELETE,
        "/system/functions",
    )
    .json(&json!({"functionName": "ticker"}))
    .send()
    .await
    .unwrap();
    assert_eq!(deleted.status(), 202);
    assert!(!pid_alive(ticker_pid));
    let listed: Value = system(
        &client,
        &devnet,
        m1,
        reqwest::Method::GET,
        "/system/functions",
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn down_stops_exactly_what_up_started() {
    let devnet = Devnet::up();
    let state = devnet.status();
    let mut pids: Vec<u64> = vec![state["supervisor_pid"].as_u64().unwrap()];
    for node in state["nodes"].as_array().unwrap() {
        pids.push(node["redis_pid"].as_u64().unwrap());
    }
    assert_eq!(pids.len(), 8);
    assert!(pids.iter().all(|&pid| pid_alive(pid)));
    // A second up in the same folder is refused while this one runs.
    let second = Command::new(env!("CARGO_BIN_EXE_edge-devnet"))
        .arg("--dir")
        .arg(&devnet.dir)
        .args(["up", &devnet.dir.join("input.json").display().to_string()])
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already up"));
    let output = run_devnet(&devnet.dir, &["down"]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("stopped"));
    for pid in pids {
        assert!(!pid_alive(pid), "process {pid} survived down");
    }
    assert!(!devnet.dir.join("state.json").exists());
    // down is idempotent.
    run_devnet(&devnet.dir, &["down"]);
}

#[test]
fn a_bad_hierarchy_is_refused_naming_the_problem() {
    let dir = repository()
        .join("target/devnet-tests")
        .join(format!("bad-{}", unique_name()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("h.json"), r#"{"areaTypesIdentifiers":["a"],"hierarchy":[{"areaName":"x","areas":[{"areaName":"y"}]}]}"#).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_edge-devnet"))
        .arg("--dir")
        .arg(dir.join("net"))
        .args(["up", &dir.join("h.json").display().to_string()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("x/y"), "{stderr}");
}

fn uuid_v4() -> String {
    let n = rand_seed();
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (n >> 96) as u32,
        (n >> 80) as u16,
        (n >> 64) as u16 & 0xfff,
        (n >> 48) as u16 & 0xfff,
        n as u64 & 0xffff_ffff_ffff
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unchanged_deployer_deploys_a_function_to_a_whole_level() {
    use clap::Parser as _;
    let devnet = Devnet::up();
    let (project, _) = built_probe();
    let hierarchy = devnet.dir.join("hierarchy.json");
    let args = [
        "deployer",
        "deploy",
        "probe",
        &hierarchy.display().to_string(),
        "-f",
        &project.join("stack.yaml").display().to_string(),
        "--inEvery",
        "district",
        "--exceptIn",
        "r2",
    ]
    .map(str::to_string);
    let cli = deployer::Cli::try_parse_from(args).unwrap();
    deployer::run(cli)
        .await
        .expect("the deployer deploys to the devnet");

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let token = std::fs::read_to_string(devnet.dir.join("hierarchy.json.node-token")).unwrap();
    for node in ["m1", "m2", "r1"] {
        let call = |path: &str| {
            client
                .post(format!("{}/function/probe{path}", devnet.gateway(node)))
                .header("X-session", "deployed")
                .header("X-session-request-id", uuid_v4())
                .send()
        };
        let answer = call("").await.unwrap();
        assert_eq!(answer.status(), 200, "probe on {node}");
        assert_eq!(
            answer.text().await.unwrap(),
            format!("probe on {node} call 1")
        );
        // The node's own Redis password and the shared node token, as secret files.
        let secrets = call("/secrets").await.unwrap().text().await.unwrap();
        let redis_password = devnet.node(node)["redis_password"].as_str().unwrap();
        assert_eq!(
            secrets,
            format!(
                "location={node}\nedge-redis-password={redis_password}\nedge-node-token={}\n",
                token.trim()
            )
        );
    }
    // Not deployed outside the selection.
    for node in ["r2", "milan", "italy"] {
        let answer = client
            .post(format!("{}/function/probe", devnet.gateway(node)))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404, "probe on {node}");
    }
    // The function's environment has the hierarchy without any password.
    let status: Value = system(
        &client,
        &devnet,
        "m1",
        reqwest::Method::GET,
        "/system/function/probe",
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let infrastructure = status["envVars"]["EDGE_INFRASTRUCTURE"].as_str().unwrap();
    assert!(!infrastructure.contains("password"), "{infrastructure}");
    assert_eq!(status["envVars"]["EDGE_LOCATION"], "m1");
}

#[test]
fn image_add_records_a_prebuilt_binary() {
    let (_, built) = built_probe();
    let registry: Value =
        serde_json::from_str(&std::fs::read_to_string(built.join("images.json")).unwrap()).unwrap();
    let probe = registry["devnet-probe:test"].as_str().unwrap().to_string();
    let dir = built
        .parent()
        .unwrap()
        .join(format!("images-{}", unique_name()));
    let output = run_devnet(&dir, &["image-add", "acme/prebuilt:1", &probe]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("acme/prebuilt:1"));
    let registry: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("images.json")).unwrap()).unwrap();
    let stored = registry["acme/prebuilt:1"].as_str().unwrap();
    assert_eq!(
        std::fs::read(stored).unwrap(),
        std::fs::read(&probe).unwrap()
    );
    let missing = Command::new(env!("CARGO_BIN_EXE_edge-devnet"))
        .arg("--dir")
        .arg(&dir)
        .args(["image-add", "x:1", "/nonexistent/binary"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/binary"));
}

#[tokio::test]
async fn a_cpu_limit_puts_the_function_in_a_cgroup_with_that_quota() {
    let controller = Path::new(edge_devnet::cpu::CPU_CONTROLLER);
    let probe = controller.join(format!("edge-devnet-probe-{}", std::process::id()));
    let writable = std::fs::create_dir(&probe).is_ok();
    let _ = std::fs::remove_dir(&probe);
    if !writable {
        eprintln!(
            "skipped: the cgroup v1 cpu controller is not writable here ({})",
            controller.display()
        );
        return;
    }
    let devnet = Devnet::up();
    let client = reqwest::Client::new();
    let deployment = |cpu: &str| {
        json!({ "service": "limited", "image": "devnet-probe:test",
                "envVars": { "EDGE_LOCATION": "m1", "EDGE_FUNCTION": "limited", "EDGE_INFRASTRUCTURE": HIERARCHY,
                             "EDGE_REDIS_URL": format!("redis://127.0.0.1:{}", devnet.node("m1")["redis_port"]) },
                "limits": { "cpu": cpu } })
    };
    let bad = system(
        &client,
        &devnet,
        "m1",
        reqwest::Method::POST,
        "/system/functions",
    )
    .json(&deployment("fast"))
    .send()
    .await
    .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("limits.cpu"));
    let deployed = system(
        &client,
        &devnet,
        "m1",
        reqwest::Method::POST,
        "/system/functions",
    )
    .json(&deployment("100m"))
    .send()
    .await
    .unwrap();
    assert_eq!(deployed.status(), 202);
    let mut pid = 0;
    wait_until(
        Duration::from_secs(10),
        "the limited function's pid",
        || {
            pid = devnet
                .function_state("m1", "limited")
                .and_then(|f| f["pid"].as_u64())
                .unwrap_or(0);
            pid != 0
        },
    );
    let supervisor = devnet.state["supervisor_pid"].as_u64().unwrap();
    let cgroup = controller.join(format!("edge-devnet/{supervisor}/m1.limited"));
    let mut member = false;
    wait_until(
        Duration::from_secs(10),
        "the function to join its cgroup",
        || {
            member = std::fs::read_to_string(cgroup.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .any(|l| l == pid.to_string());
            member
        },
    );
    assert_eq!(
        std::fs::read_to_string(cgroup.join("cpu.cfs_quota_us"))
            .unwrap()
            .trim(),
        "10000"
    );
    assert_eq!(
        std::fs::read_to_string(cgroup.join("cpu.cfs_period_us"))
            .unwrap()
            .trim(),
        "100000"
    );
    let deleted = system(
        &client,
        &devnet,
        "m1",
        reqwest::Method::DELETE,
        "/system/functions",
    )
    .json(&json!({"functionName": "limited"}))
    .send()
    .await
    .unwrap();
    assert_eq!(deleted.status(), 202);
    assert!(!cgroup.exists(), "the cgroup outlived its function");
}
