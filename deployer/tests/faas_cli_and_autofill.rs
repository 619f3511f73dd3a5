//! `deploy --faas-cli` with a fake `faas-cli` script (`$FAAS_CLI`) that
//! records its calls, and the autofill of omitted `mainLocation` fields with
//! a fake `kubectl` script (`$KUBECTL`).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::*;
use edge_sdk::hierarchy::{Area, Infrastructure, MainLocation};

/// Records each call as a file in `$FAKE_LOG`: `CONFIG=<OPENFAAS_CONFIG>`,
/// one `ARG <arg>` line per argument and, for `login`, `STDIN <stdin>`.
/// Fails `deploy` when `$FAKE_FAIL` is set.
const FAKE_FAAS_CLI: &str = r#"#!/bin/sh
out="$FAKE_LOG/call-$$"
{
  printf 'CONFIG=%s\n' "$OPENFAAS_CONFIG"
  for arg in "$@"; do printf 'ARG %s\n' "$arg"; done
  if [ "$1" = login ]; then printf 'STDIN %s\n' "$(cat)"; fi
} > "$out.tmp"
mv "$out.tmp" "$out"
if [ "$1" = deploy ] && [ -n "$FAKE_FAIL" ]; then
  echo "Server returned unexpected status code: 500 - boom" >&2
  exit 1
fi
echo "Deployed. 202 Accepted."
"#;

/// Answers `get nodes -o jsonpath=… --context=<name>` from the files in
/// `$FAKE_KUBECTL_DIR`: `<name>` holds the address; no file, no context.
/// Every call is appended to `$FAKE_KUBECTL_DIR/calls`.
const FAKE_KUBECTL: &str = r#"#!/bin/sh
echo "$*" >> "$FAKE_KUBECTL_DIR/calls"
for arg in "$@"; do
  case "$arg" in --context=*) context="${arg#--context=}" ;; esac
done
if [ -f "$FAKE_KUBECTL_DIR/$context" ]; then
  cat "$FAKE_KUBECTL_DIR/$context"
else
  echo "error: context \"$context\" does not exist" >&2
  exit 1
fi
"#;

struct Call {
    config: String,
    args: Vec<String>,
    stdin: Option<String>,
}

fn calls(log: &Path) -> Vec<Call> {
    let mut calls: Vec<Call> = std::fs::read_dir(log)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_none())
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let mut call = Call {
                config: String::new(),
                args: Vec::new(),
                stdin: None,
            };
            for line in text.lines() {
                if let Some(config) = line.strip_prefix("CONFIG=") {
                    call.config = config.to_owned();
                } else if let Some(arg) = line.strip_prefix("ARG ") {
                    call.args.push(arg.to_owned());
                } else if let Some(stdin) = line.strip_prefix("STDIN ") {
                    call.stdin = Some(stdin.to_owned());
                }
            }
            call
        })
        .collect();
    calls.sort_by(|a, b| a.args.cmp(&b.args));
    calls
}

#[test]
fn faas_cli_logs_in_with_the_password_on_stdin_then_deploys_with_the_edge_environment() {
    let in_flight = Arc::new(InFlight::default());
    let gateways: Vec<FakeGateway> = (0..3)
        .map(|i| {
            FakeGateway::start(
                Behavior::accepting(&format!("edge-{i}-admin-pw")),
                in_flight.clone(),
            )
        })
        .collect();
    let dir = test_support::tempdir();
    let infra = flat_hierarchy(&gateways);
    write_hierarchy(&dir, &infra);
    write_stack(&dir);
    let log = dir.join("log");
    std::fs::create_dir(&log).unwrap();
    let script = dir.join("fake-faas-cli");
    write_script(&script, FAKE_FAAS_CLI);

    let mut command = deployer(&dir);
    command
        .args([
            "deploy",
            "cart",
            "hierarchy.json",
            "--faas-cli",
            "--label=team=edge",
            "--faas-cli",
            "--replace",
        ])
        .env("FAAS_CLI", &script)
        .env("FAKE_LOG", &log)
        .env("EDGE_NODE_TOKEN", "tok-123");
    let output = run(&mut command);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}\n{}", stderr(&output));

    // The secrets still go through the REST API; the function does not.
    for (i, gateway) in gateways.iter().enumerate() {
        assert_eq!(
            gateway.calls(),
            ["POST /system/secrets", "POST /system/secrets"]
        );
        assert_eq!(gateway.secrets()["edge-node-token"]["value"], "tok-123");
        assert_eq!(
            gateway.secrets()["edge-redis-password"]["value"],
            format!("edge-{i}-redis-pw")
        );
        assert!(gateway.functions().is_empty());
    }

    let calls = calls(&log);
    assert_eq!(calls.len(), 6, "a login and a deploy per node");
    let hierarchy = infra.without_passwords().to_json();
    let mut configs = BTreeMap::new();
    for (i, gateway) in gateways.iter().enumerate() {
        let login = calls
            .iter()
            .find(|c| c.args[0] == "login" && c.args[2] == gateway.url)
            .expect("a login per node");
        assert_eq!(
            login.args,
            [
                "login",
                "--gateway",
                &gateway.url,
                "--username",
                "admin",
                "--password-stdin"
            ]
        );
        assert_eq!(
            login.stdin.as_deref(),
            Some(format!("edge-{i}-admin-pw").as_str())
        );
        let deploy = calls
            .iter()
            .find(|c| c.args[0] == "deploy" && c.args[2] == gateway.url)
            .expect("a deploy per node");
        let expected: Vec<String> = [
            "deploy",
            "--gateway",
            &gateway.url,
            "-f",
            "stack.yaml",
            "--filter",
            "cart",
            "--env",
            &format!("EDGE_LOCATION=edge-{i}"),
            "--env",
            "EDGE_FUNCTION=cart",
            "--env",
            &format!("EDGE_INFRASTRUCTURE={hierarchy}"),
            "--env",
            &format!("EDGE_REDIS_URL=redis://redis.edge-{i}.test:6379"),
            "--secret",
            "edge-redis-password",
            "--secret",
            "edge-node-token",
            "--label=team=edge",
            "--replace",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(deploy.args, expected);
        assert!(!deploy.args.join(" ").contains("password\""));
        // Login and deploy share a configuration folder of their own.
        assert_eq!(login.config, deploy.config);
        assert!(configs.insert(login.config.clone(), i).is_none());
    }
    assert!(out.contains("deployed with faas-cli"), "{out}");
    // The per-node configuration folders are cleaned up.
    for config in configs.keys() {
        assert!(!Path::new(config).exists(), "{config} left behind");
    }
}

#[test]
fn a_failing_faas_cli_fails_its_node() {
    let gateway = FakeGateway::start(
        Behavior::accepting("edge-0-admin-pw"),
        Arc::new(InFlight::default()),
    );
    let dir = test_support::tempdir();
    write_hierarchy(&dir, &flat_hierarchy(std::slice::from_ref(&gateway)));
    write_stack(&dir);
    let log = dir.join("log");
    std::fs::create_dir(&log).unwrap();
    let script = dir.join("fake-faas-cli");
    write_script(&script, FAKE_FAAS_CLI);
    let mut command = deployer(&dir);
    command
        .args([
            "deploy",
            "cart",
            "hierarchy.json",
            "--faas-cli",
            "--replace",
        ])
        .env("FAAS_CLI", &script)
        .env("FAKE_LOG", &log)
        .env("FAKE_FAIL", "1")
        .env("EDGE_NODE_TOKEN", "tok");
    let output = run(&mut command);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("faas-cli deploy failed (exit status: 1): Server returned unexpected status code: 500 - boom"),
        "{out}"
    );
}

#[test]
fn a_missing_faas_cli_is_a_usage_error_before_anything_is_sent() {
    let gateway = FakeGateway::start(
        Behavior::accepting("edge-0-admin-pw"),
        Arc::new(InFlight::default()),
    );
    let dir = test_support::tempdir();
    write_hierarchy(&dir, &flat_hierarchy(std::slice::from_ref(&gateway)));
    write_stack(&dir);
    for missing in ["/nonexistent/faas-cli", "faas-cli-not-on-path"] {
        let mut command = deployer(&dir);
        command
            .args([
                "deploy",
                "cart",
                "hierarchy.json",
                "--faas-cli",
                "--replace",
            ])
            .env("FAAS_CLI", missing)
            .env("EDGE_NODE_TOKEN", "tok");
        let output = run(&mut command);
        assert_eq!(output.status.code(), Some(2));
        assert_eq!(
            stderr(&output),
            "error: faas-cli not found: install it or drop --faas-cli\n"
        );
    }
    assert!(gateway.requests().is_empty());
}

/// A fake kubectl in `dir/kubectl` answering for the contexts given.
fn fake_kubectl(dir: &Path, contexts: &[(&str, &str)]) -> std::path::PathBuf {
    let answers = dir.join("kubectl-contexts");
    std::fs::create_dir_all(&answers).unwrap();
    for (context, address) in contexts {
        std::fs::write(answers.join(context), format!("{address}\n")).unwrap();
    }
    let script = dir.join("kubectl");
    write_script(&script, FAKE_KUBECTL);
    script
}

/// Thesis Listing A.1: every mainLocation empty; milan and rome are cities.
const THESIS_A1: &str = r#"{ "areaTypesIdentifiers": ["country", "city", "district"],
  "hierarchy": [ { "areaName": "italy", "mainLocation": { },
    "areas": [ { "areaName": "milan", "mainLocation": { }, "areas": [ ] },
               { "areaName": "rome", "mainLocation": { }, "areas": [ ] } ] } ] }"#;

#[test]
fn omitted_fields_are_autofilled_with_kubectl_and_the_thesis_defaults() {
    // The gateways kubectl reports listen on port 31112 of loopback
    // addresses of their own, as k3d clusters would on theirs.
    let base = 100 + std::process::id() % 100;
    let in_flight = Arc::new(InFlight::default());
    let addresses: Vec<String> = (1..=3).map(|i| format!("127.{base}.{i}.1")).collect();
    let gateways: Vec<FakeGateway> = addresses
        .iter()
        .map(|address| {
            FakeGateway::start_on(
                format!("{address}:31112").parse().unwrap(),
                Behavior::accepting("autofilled-password"),
                in_flight.clone(),
            )
        })
        .collect();
    let dir = test_support::tempdir();
    std::fs::write(dir.join("hierarchy.json"), THESIS_A1).unwrap();
    write_stack(&dir);
    let kubectl = fake_kubectl(
        &dir,
        &[
            ("italy", &addresses[0]),
            ("milan", &addresses[1]),
            ("rome", &addresses[2]),
        ],
    );

    let mut command = deployer(&dir);
    command
        .args(["deploy", "cart", "hierarchy.json", "--inEvery", "city"])
        .env("KUBECTL", &kubectl)
        .env("FAKE_KUBECTL_DIR", dir.join("kubectl-contexts"))
        .env("EDGE_NODE_TOKEN", "tok");
    let output = run(&mut command);
    let (out, err) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(0), "{out}\n{err}");
    assert!(
        err.contains("note: filled in omitted mainLocation fields: openfaas_gateway ×3 (kubectl), openfaas_password ×3, redis_host ×3, redis_port ×3, redis_password ×3"),
        "{err}"
    );
    let kubectl_calls = std::fs::read_to_string(dir.join("kubectl-contexts/calls")).unwrap();
    assert_eq!(
        kubectl_calls,
        "get nodes -o jsonpath={.items[0].status.addresses[0].address} --context=italy\n\
         get nodes -o jsonpath={.items[0].status.addresses[0].address} --context=milan\n\
         get nodes -o jsonpath={.items[0].status.addresses[0].address} --context=rome\n"
    );

    // Only the cities were deployed to, with the autofilled values.
    assert!(gateways[0].requests().is_empty());
    for (gateway, name) in gateways[1..].iter().zip(["milan", "rome"]) {
        assert_eq!(
            gateway.secrets()["edge-redis-password"]["value"],
            "autofilled-password"
        );
        let deployment = &gateway.functions()["cart"];
        let env = &deployment["envVars"];
        assert_eq!(env["EDGE_LOCATION"], name);
        assert_eq!(
            env["EDGE_REDIS_URL"],
            "redis://my-openfaas-redis-master.openfaas-fn.svc.cluster.local:6379"
        );
        // Functions get the autofilled gateways, without the passwords.
        let hierarchy =
            Infrastructure::from_json(env["EDGE_INFRASTRUCTURE"].as_str().unwrap()).unwrap();
        assert_eq!(
            hierarchy.gateway("rome"),
            Some(format!("http://{}:31112", addresses[2]).as_str())
        );
        assert_eq!(
            hierarchy.node("milan").unwrap().main_location,
            MainLocation {
                openfaas_gateway: Some(format!("http://{}:31112", addresses[1])),
                openfaas_password: None,
                redis_host: Some("my-openfaas-redis-master.openfaas-fn.svc.cluster.local".into()),
                redis_port: Some(6379),
                redis_password: None,
            }
        );
    }
    // The file itself is left as written.
    assert_eq!(
        std::fs::read_to_string(dir.join("hierarchy.json")).unwrap(),
        THESIS_A1
    );
}

#[test]
fn kubectl_is_not_run_when_every_gateway_is_given() {
    let dir = test_support::tempdir();
    let root = Area::new("cloud").with_main_location(MainLocation {
        openfaas_gateway: Some(dead_gateway()),
        ..MainLocation::default()
    });
    write_hierarchy(&dir, &Infrastructure::new(["cloud"], root).unwrap());
    write_stack(&dir);
    let kubectl = fake_kubectl(&dir, &[]);
    let mut command = deployer(&dir);
    command
        .args(["deploy", "cart", "hierarchy.json", "--dry-run"])
        .env("KUBECTL", &kubectl)
        .env("FAKE_KUBECTL_DIR", dir.join("kubectl-contexts"));
    let output = run(&mut command);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(!dir.join("kubectl-contexts/calls").exists());
    // The other fields are still filled in.
    assert!(
        stderr(&output)
            .contains("openfaas_password ×1, redis_host ×1, redis_port ×1, redis_password ×1"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_missing_kubectl_or_context_is_a_usage_error_naming_the_nodes() {
    let dir = test_support::tempdir();
    std::fs::write(dir.join("hierarchy.json"), THESIS_A1).unwrap();
    write_stack(&dir);

    let mut command = deployer(&dir);
    command
        .args([
            "deploy",
            "cart",
            "hierarchy.json",
            "--inEvery",
            "city",
            "--dry-run",
        ])
        .env("KUBECTL", dir.join("no-kubectl-here"));
    let output = run(&mut command);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains("error: kubectl not found: it is needed to fill in the openfaas_gateway that 3 nodes omit (italy, italy/milan, italy/rome); install it, set KUBECTL to its path, or write the gateways into the hierarchy file"),
        "{err}"
    );

    let kubectl = fake_kubectl(&dir, &[("italy", "127.0.0.1")]);
    let mut command = deployer(&dir);
    command
        .args([
            "deploy",
            "cart",
            "hierarchy.json",
            "--inEvery",
            "city",
            "--dry-run",
        ])
        .env("KUBECTL", &kubectl)
        .env("FAKE_KUBECTL_DIR", dir.join("kubectl-contexts"));
    let output = run(&mut command);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains("error: cannot fill in openfaas_gateway of 2 node(s) with kubectl:"),
        "{err}"
    );
    assert!(
        err.contains("  italy/milan: kubectl --context=milan failed (exit status: 1): error: context \"milan\" does not exist"),
        "{err}"
    );
    assert!(
        err.contains("  italy/rome: kubectl --context=rome failed"),
        "{err}"
    );
}
