//! `deployer deploy` against real HTTP servers that answer like OpenFaaS
//! gateways: payloads, secrets, auth, retries, failures, the table, exit
//! codes and the concurrency bound.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use edge_sdk::hierarchy::{Area, Infrastructure};

const TOKEN: &str = "the-shared-node-token-0123456789";

/// italy → milan{m1,m2}, rome{r1,r2}, turin{t1}; each node on its own
/// fake gateway unless `gateway` says otherwise.
struct Italy {
    dir: test_support::TempDir,
    hierarchy: std::path::PathBuf,
    gateways: std::collections::BTreeMap<&'static str, FakeGateway>,
}

const NODES: [(&str, &str); 9] = [
    ("italy", "italy"),
    ("milan", "italy/milan"),
    ("m1", "italy/milan/m1"),
    ("m2", "italy/milan/m2"),
    ("rome", "italy/rome"),
    ("r1", "italy/rome/r1"),
    ("r2", "italy/rome/r2"),
    ("turin", "italy/turin"),
    ("t1", "italy/turin/t1"),
];

impl Italy {
    fn start(mut behavior: impl FnMut(&str) -> Behavior) -> Italy {
        let in_flight = Arc::new(InFlight::default());
        let gateways = NODES
            .iter()
            .map(|(name, _)| (*name, FakeGateway::start(behavior(name), in_flight.clone())))
            .collect();
        Italy::with_gateways(
            gateways,
            |_, url| url.to_owned(),
            |name| format!("{name}-admin-pw"),
        )
    }

    fn with_gateways(
        gateways: std::collections::BTreeMap<&'static str, FakeGateway>,
        url: impl Fn(&str, &str) -> String,
        password: impl Fn(&str) -> String,
    ) -> Italy {
        let node = |name: &str| {
            let mut location = location(name, &url(name, &gateways[name].url));
            location.openfaas_password = Some(password(name));
            Area::new(name).with_main_location(location)
        };
        let root = node("italy")
            .with_area(node("milan").with_area(node("m1")).with_area(node("m2")))
            .with_area(node("rome").with_area(node("r1")).with_area(node("r2")))
            .with_area(node("turin").with_area(node("t1")));
        let infra = Infrastructure::new(["country", "city", "district"], root).unwrap();
        let dir = test_support::tempdir();
        let hierarchy = write_hierarchy(&dir, &infra);
        write_stack(&dir);
        Italy {
            dir,
            hierarchy,
            gateways,
        }
    }

    fn deploy(&self, args: &[&str]) -> std::process::Output {
        let mut command = deployer(&self.dir);
        command
            .args(["deploy", "cart", "hierarchy.json"])
            .args(args)
            .env("EDGE_NODE_TOKEN", TOKEN);
        run(&mut command)
    }

    fn touched(&self) -> Vec<&str> {
        self.gateways
            .iter()
            .filter(|(_, gateway)| !gateway.requests().is_empty())
            .map(|(name, _)| *name)
            .collect()
    }
}

fn path_of(name: &str) -> &'static str {
    NODES.iter().find(|(n, _)| *n == name).unwrap().1
}

#[test]
fn basic_auth_helper_is_base64() {
    assert_eq!(basic_auth("admin", "pw"), "Basic YWRtaW46cHc=");
    assert_eq!(basic_auth("admin", "p"), "Basic YWRtaW46cA==");
    assert_eq!(basic_auth("admin", "pwd"), "Basic YWRtaW46cHdk");
}

#[test]
fn deploys_secrets_then_the_function_to_every_district() {
    let italy = Italy::start(|name| {
        let mut behavior = Behavior::accepting(&format!("{name}-admin-pw"));
        if name == "m2" || name == "t1" {
            behavior.success = StatusCode::ACCEPTED;
        }
        behavior
    });
    // r1 runs the function already; r2 has the secrets already.
    italy.gateways["r1"].preload_function("cart");
    italy.gateways["r2"].preload_secret("edge-redis-password");
    italy.gateways["r2"].preload_secret("edge-node-token");

    let output = italy.deploy(&[]);
    let (out, err) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(0), "{out}\n{err}");

    // Only the districts (the lowest level) were touched.
    assert_eq!(italy.touched(), ["m1", "m2", "r1", "r2", "t1"]);
    assert_eq!(
        italy.gateways["m1"].calls(),
        [
            "POST /system/secrets",
            "POST /system/secrets",
            "PUT /system/functions",
            "POST /system/functions"
        ]
    );
    assert_eq!(
        italy.gateways["r1"].calls(),
        [
            "POST /system/secrets",
            "POST /system/secrets",
            "PUT /system/functions"
        ]
    );
    assert_eq!(
        italy.gateways["r2"].calls(),
        [
            "POST /system/secrets",
            "PUT /system/secrets",
            "POST /system/secrets",
            "PUT /system/secrets",
            "PUT /system/functions",
            "POST /system/functions"
        ]
    );

    let stack_infra = Infrastructure::from_path(&italy.hierarchy).unwrap();
    for name in ["m1", "m2", "r1", "r2", "t1"] {
        let gateway = &italy.gateways[name];
        for request in gateway.requests() {
            assert_eq!(
                request.authorization.as_deref(),
                Some(basic_auth("admin", &format!("{name}-admin-pw")).as_str()),
                "{name}"
            );
        }
        // The secrets, with this node's values.
        let secrets = gateway.secrets();
        assert_eq!(
            secrets["edge-redis-password"],
            serde_json::json!({"name": "edge-redis-password", "namespace": "openfaas-fn", "value": format!("{name}-redis-pw")}),
            "{name}"
        );
        assert_eq!(secrets["edge-node-token"]["value"], TOKEN, "{name}");

        // The deployment: the stack's fields, the injected environment and
        // the secrets to mount.
        let requests = gateway.requests();
        let function_request = requests
            .iter()
            .rfind(|r| r.path == "/system/functions")
            .unwrap();
        for secret_value in ["-redis-pw", "-admin-pw", TOKEN] {
            assert!(
                !function_request.body.contains(secret_value),
                "{name}: the deployment carries a secret value {secret_value}"
            );
        }
        let deployment = function_request.json();
        assert_eq!(deployment["service"], "cart");
        assert_eq!(deployment["image"], "ghcr.io/acme/cart:0.1.0");
        assert_eq!(deployment["namespace"], "openfaas-fn");
        assert_eq!(deployment["envProcess"], "./handler");
        let env = &deployment["envVars"];
        assert_eq!(env["RUST_LOG"], "info");
        assert_eq!(env["FROM_ENV_FILE"], "yes");
        assert_eq!(env["EDGE_LOCATION"], name);
        assert_eq!(env["EDGE_FUNCTION"], "cart");
        assert_eq!(
            env["EDGE_REDIS_URL"],
            format!("redis://redis.{name}.test:6379")
        );
        let hierarchy = env["EDGE_INFRASTRUCTURE"].as_str().unwrap();
        assert!(!hierarchy.contains("password"), "{hierarchy}");
        assert!(!hierarchy.contains('\n'), "compact JSON");
        assert_eq!(
            Infrastructure::from_json(hierarchy).unwrap(),
            stack_infra.without_passwords()
        );
        assert_eq!(
            deployment["labels"],
            serde_json::json!({"com.openfaas.scale.min": "1"})
        );
        assert_eq!(
            deployment["annotations"],
            serde_json::json!({"topic": "cron-function", "schedule": "*/1 * * * *"})
        );
        assert_eq!(
            deployment["limits"],
            serde_json::json!({"memory": "128Mi", "cpu": "500m"})
        );
        assert_eq!(
            deployment["requests"],
            serde_json::json!({"memory": "64Mi"})
        );
        assert_eq!(
            deployment["secrets"],
            serde_json::json!(["api-key", "edge-redis-password", "edge-node-token"])
        );
        assert_eq!(gateway.functions()["cart"], deployment);
    }

    // The stack sets EDGE_REDIS_URL: the deployer's value wins, with a warning.
    assert!(
        err.contains("warning: stack.yaml sets EDGE_REDIS_URL for function \"cart\"; the deployer's value replaces it"),
        "{err}"
    );
    assert!(out.contains("node token: from EDGE_NODE_TOKEN"), "{out}");
    assert!(out.contains("nodes: 5 at level \"district\""), "{out}");
    // The table: one row per node, in hierarchy order.
    let table: Vec<&str> = out
        .lines()
        .skip_while(|line| !line.starts_with("NODE"))
        .collect();
    assert!(
        table[0].starts_with("NODE            LEVEL     RESULT"),
        "{out}"
    );
    for (row, (name, detail)) in table[1..].iter().zip([
        ("m1", "created"),
        ("m2", "created"),
        ("r1", "updated"),
        ("r2", "created"),
        ("t1", "created"),
    ]) {
        assert!(row.starts_with(path_of(name)), "{row}");
        assert!(row.contains(" district  ok "), "{row}");
        assert!(row.contains(" ms  "), "{row}");
        assert!(row.ends_with(detail), "{row}");
    }
    assert!(table[6].starts_with("5 nodes: 5 ok, 0 failed in "), "{out}");
    // Nothing of the progress bar leaks into a non-terminal stderr.
    assert!(!err.contains('\r') && !err.contains("\x1b["), "{err:?}");
}

#[test]
fn failing_nodes_are_reported_and_retried_only_when_it_may_help() {
    let dead = dead_gateway();
    let in_flight = Arc::new(InFlight::default());
    let gateways = NODES
        .iter()
        .map(|(name, _)| {
            let mut behavior = Behavior::accepting(&format!("{name}-admin-pw"));
            behavior.fail_with = match *name {
                "r1" => Some(StatusCode::INTERNAL_SERVER_ERROR),
                "t1" => Some(StatusCode::BAD_REQUEST),
                _ => None,
            };
            (*name, FakeGateway::start(behavior, in_flight.clone()))
        })
        .collect();
    let italy = Italy::with_gateways(
        gateways,
        |name, url| {
            if name == "r2" {
                dead.clone()
            } else {
                url.to_owned()
            }
        },
        |name| {
            if name == "m2" {
                "wrong-password".into()
            } else {
                format!("{name}-admin-pw")
            }
        },
    );

    let output = italy.deploy(&["--retries", "2"]);
    let (out, err) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("error: 4 of 5 node(s) failed"), "{err}");

    let row = |name: &str| -> String {
        out.lines()
            .find(|line| line.starts_with(&format!("{} ", path_of(name))))
            .unwrap_or_else(|| panic!("no row for {name} in\n{out}"))
            .to_owned()
    };
    assert!(row("m1").contains(" ok "), "{out}");
    assert!(row("m1").ends_with("created"), "{out}");

    // 401: not retried, and the message says which password to check.
    assert!(row("m2").contains(" failed "), "{out}");
    assert!(
        row("m2").ends_with("authentication failed (check openfaas_password of italy/milan/m2)"),
        "{out}"
    );
    assert_eq!(italy.gateways["m2"].calls(), ["POST /system/secrets"]);

    // 500 every time: retried twice, then reported.
    assert!(
        row("r1").contains("gateway answered 500 Internal Server Error to POST /system/secrets: fake failure 500 (after 3 attempts)"),
        "{out}"
    );
    assert_eq!(italy.gateways["r1"].calls().len(), 3);

    // A dead node: connection refused, retried, reported.
    assert!(row("r2").contains(" failed "), "{out}");
    assert!(
        row("r2").to_lowercase().contains("connection refused"),
        "{out}"
    );
    assert!(row("r2").contains("(after 3 attempts)"), "{out}");

    // 400: never retried.
    assert!(
        row("t1").contains("gateway answered 400 Bad Request to POST /system/secrets"),
        "{out}"
    );
    assert!(!row("t1").contains("attempts"), "{out}");
    assert_eq!(italy.gateways["t1"].calls().len(), 1);

    assert!(out.contains("5 nodes: 1 ok, 4 failed in "), "{out}");
}

#[test]
fn slow_gateways_time_out() {
    let italy = Italy::start(|name| {
        let mut behavior = Behavior::accepting(&format!("{name}-admin-pw"));
        if name == "t1" {
            behavior.delay = Duration::from_secs(3);
        }
        behavior
    });
    let output = italy.deploy(&["--timeout", "1", "--retries", "0", "--inAreas", "turin"]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("POST /system/secrets: no answer within 1 s"),
        "{out}"
    );
}

#[test]
fn the_selection_flags_pick_the_gateways_deployed_to() {
    let italy = Italy::start(|name| Behavior::accepting(&format!("{name}-admin-pw")));
    let output = italy.deploy(&["--inEvery", "city", "--exceptIn", "rome"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(italy.touched(), ["milan", "turin"]);

    let output = italy.deploy(&["--inArea", "rome", "--inAreas", "turin", "--exceptIn", "r1"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(italy.touched(), ["milan", "r2", "t1", "turin"]);

    let output = italy.deploy(&["--inEvery", "country"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(italy.touched(), ["italy", "milan", "r2", "t1", "turin"]);
}

#[test]
fn a_second_deploy_updates_and_reuses_the_generated_token() {
    let italy = Italy::start(|name| Behavior::accepting(&format!("{name}-admin-pw")));
    let deploy = || {
        let mut command = deployer(&italy.dir);
        command.args(["deploy", "cart", "hierarchy.json", "--inAreas", "milan"]);
        run(&mut command)
    };
    let first = deploy();
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let token_file = italy.dir.join("hierarchy.json.node-token");
    assert!(
        stdout(&first).contains(
            "node token: generated a new one into hierarchy.json.node-token (mode 0600); later deploys reuse it"
        ),
        "{}",
        stdout(&first)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(token.len(), 64);
    assert_eq!(
        italy.gateways["m1"].secrets()["edge-node-token"]["value"],
        token
    );

    let second = deploy();
    let out = stdout(&second);
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    assert!(
        out.contains("node token: from hierarchy.json.node-token"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("italy/milan/m2 ") && l.ends_with("updated")),
        "{out}"
    );
    assert_eq!(
        italy.gateways["m2"].calls()[4..],
        [
            "POST /system/secrets",
            "PUT /system/secrets",
            "POST /system/secrets",
            "PUT /system/secrets",
            "PUT /system/functions"
        ]
    );
    assert_eq!(
        italy.gateways["m2"].secrets()["edge-node-token"]["value"],
        token
    );

    // --node-token-file wins over the generated file.
    let given = italy.dir.join("token.txt");
    std::fs::write(&given, "from-a-file\n").unwrap();
    let mut command = deployer(&italy.dir);
    command.args([
        "deploy",
        "cart",
        "hierarchy.json",
        "--inAreas",
        "m1",
        "--node-token-file",
        "token.txt",
    ]);
    let third = run(&mut command);
    assert_eq!(third.status.code(), Some(0), "{}", stderr(&third));
    assert_eq!(
        italy.gateways["m1"].secrets()["edge-node-token"]["value"],
        "from-a-file"
    );
}

#[test]
fn a_dry_run_touches_nothing() {
    let italy = Italy::start(|name| Behavior::accepting(&format!("{name}-admin-pw")));
    let mut command = deployer(&italy.dir);
    command
        .args(["deploy", "cart", "hierarchy.json", "--dry-run"])
        .env("CART_TAG", "2.0.0");
    let output = run(&mut command);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(italy.touched().is_empty());
    assert!(!italy.dir.join("hierarchy.json.node-token").exists());
    assert!(out.contains("a deploy would generate it"), "{out}");
    assert!(
        out.contains("\"image\": \"ghcr.io/acme/cart:2.0.0\""),
        "{out}"
    );
    assert!(out.contains("\"EDGE_LOCATION\": \"r2\""), "{out}");
    for secret in ["-redis-pw", "-admin-pw"] {
        assert!(!out.contains(secret), "{out}");
    }
}

#[test]
fn the_concurrency_bound_holds_across_all_gateways() {
    let in_flight = Arc::new(InFlight::default());
    let gateways: Vec<FakeGateway> = (0..10)
        .map(|i| {
            let mut behavior = Behavior::accepting(&format!("edge-{i}-admin-pw"));
            behavior.delay = Duration::from_millis(60);
            FakeGateway::start(behavior, in_flight.clone())
        })
        .collect();
    let dir = test_support::tempdir();
    write_hierarchy(&dir, &flat_hierarchy(&gateways));
    write_stack(&dir);
    let mut command = deployer(&dir);
    command
        .args(["deploy", "cart", "hierarchy.json", "--concurrency", "3"])
        .env("EDGE_NODE_TOKEN", TOKEN);
    let output = run(&mut command);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    for gateway in &gateways {
        assert!(gateway.functions().contains_key("cart"));
    }
    let max = in_flight.max();
    assert!(max <= 3, "{max} requests in flight with --concurrency 3");
    assert!(max > 1, "the nodes were deployed one at a time");
}

#[test]
fn the_stack_file_defaults_to_stack_yaml_then_stack_yml() {
    let italy = Italy::start(|name| Behavior::accepting(&format!("{name}-admin-pw")));
    std::fs::rename(italy.dir.join("stack.yaml"), italy.dir.join("stack.yml")).unwrap();
    let output = italy.deploy(&["--dry-run"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("function \"cart\" from stack.yml"),
        "{}",
        stdout(&output)
    );

    std::fs::rename(
        italy.dir.join("stack.yml"),
        italy.dir.join("functions.yaml"),
    )
    .unwrap();
    let output = italy.deploy(&["--dry-run"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("error: cannot read the stack file stack.yaml: "),
        "{}",
        stderr(&output)
    );
    let output = italy.deploy(&["--dry-run", "-f", "functions.yaml"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(italy.touched().is_empty());
}
