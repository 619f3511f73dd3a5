//! The `rust-edge` template, used the way a function author uses it:
//! `faas-cli template pull`, `faas-cli new`, `faas-cli build --shrinkwrap`,
//! then a plain `cargo build` of the build context, and the binary answering
//! real calls against a real Redis. Plus the check that the template's
//! fprocess, Dockerfile and the runtime's defaults agree.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use openfaas_stack::{
    LanguageTemplate, NewOptions, StackFile, install_templates, new_function, shrinkwrap,
};
use test_support::{RedisServer, free_port, wait_until};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn template_dir() -> PathBuf {
    repository().join("template/rust-edge")
}

/// `ENV name="value"` of the Dockerfile's final stage.
fn dockerfile_env(dockerfile: &str, name: &str) -> Option<String> {
    let ship = dockerfile.rsplit_once("\nFROM ").map(|(_, ship)| ship)?;
    ship.lines().find_map(|line| {
        let rest = line
            .strip_prefix("ENV ")?
            .strip_prefix(name)?
            .strip_prefix('=')?;
        Some(rest.trim_matches('"').to_string())
    })
}

#[test]
fn fprocess_dockerfile_and_runtime_defaults_agree() {
    let template = LanguageTemplate::from_path(template_dir().join("template.yml")).unwrap();
    assert_eq!(template.language.as_deref(), Some("rust-edge"));
    let fprocess = template.fprocess.clone().unwrap();
    assert!(
        template
            .welcome_message
            .is_some_and(|m| m.contains("X-session"))
    );

    let dockerfile = std::fs::read_to_string(template_dir().join("Dockerfile")).unwrap();
    assert_eq!(
        dockerfile_env(&dockerfile, "fprocess").as_deref(),
        Some(fprocess.as_str())
    );
    assert_eq!(dockerfile_env(&dockerfile, "mode").as_deref(), Some("http"));
    let upstream = dockerfile_env(&dockerfile, "upstream_url").unwrap();
    let listen = dockerfile_env(&dockerfile, "EDGE_LISTEN").unwrap();
    assert_eq!(upstream, format!("http://{listen}"));
    assert_eq!(
        listen,
        edge_sdk::config::DEFAULT_LISTEN,
        "the runtime's default listen address"
    );
    assert!(dockerfile_env(&dockerfile, "exec_timeout").is_some());
    assert!(dockerfile_env(&dockerfile, "write_timeout").is_some());

    // fprocess runs ./handler from the final image's WORKDIR, where the
    // binary named in main/Cargo.toml is copied.
    let binary = fprocess.strip_prefix("./").unwrap();
    let main_toml = std::fs::read_to_string(template_dir().join("main/Cargo.toml")).unwrap();
    assert!(
        main_toml.contains(&format!("name = \"{binary}\"")),
        "main/Cargo.toml builds {binary}"
    );
    assert!(dockerfile.contains(&format!("COPY --from=build /handler /home/app/{binary}")));
    assert!(dockerfile.contains("WORKDIR /home/app"));
    assert!(
        dockerfile.contains("USER 65532:65532"),
        "the final image runs as a non-root user"
    );
    assert!(
        dockerfile.contains("of-watchdog:${WATCHDOG_VERSION}")
            && dockerfile.contains("ARG WATCHDOG_VERSION=0.")
    );
    assert!(dockerfile.contains("TARGETARCH") && dockerfile.contains("BUILDPLATFORM"));

    // The handler crate depends on edge-sdk only, by version.
    let function_toml =
        std::fs::read_to_string(template_dir().join("function/Cargo.toml")).unwrap();
    let dependencies = function_toml.split("[dependencies]").nth(1).unwrap();
    let deps: Vec<&str> = dependencies
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(deps, ["edge-sdk = \"0.1\""]);
    let dockerignore = std::fs::read_to_string(template_dir().join(".dockerignore")).unwrap();
    assert!(dockerignore.lines().any(|l| l.trim() == "**/target"));

    // The build script the Dockerfile runs is valid shell.
    let syntax = Command::new("sh")
        .arg("-n")
        .arg(template_dir().join("build-function.sh"))
        .status()
        .unwrap();
    assert!(syntax.success());
}

struct Function(Child);

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_new_function_builds_from_the_shrinkwrapped_context_and_answers() {
    // A project folder inside target/ so that the repository's pinned
    // toolchain applies to the nested cargo build.
    let project = repository()
        .join("target/template-tests")
        .join(format!("project-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&project).unwrap();

    // faas-cli template pull <this repository>
    assert_eq!(
        install_templates(&repository(), &project).unwrap(),
        ["rust-edge"]
    );
    // faas-cli new myfn --lang rust-edge
    let created = new_function(&project, "rust-edge", "myfn", &NewOptions::default()).unwrap();
    assert!(created.welcome_message.unwrap().contains("X-session"));
    assert_eq!(
        std::fs::read_to_string(project.join("stack.yaml")).unwrap(),
        "version: 1.0\nprovider:\n  name: openfaas\n  gateway: http://127.0.0.1:8080\nfunctions:\n  \
         myfn:\n    lang: rust-edge\n    handler: ./myfn\n    image: myfn:latest\n\n"
    );
    assert_eq!(
        std::fs::read_to_string(project.join("myfn/src/lib.rs")).unwrap(),
        std::fs::read_to_string(template_dir().join("function/src/lib.rs")).unwrap()
    );
    let stack = StackFile::from_path(project.join("stack.yaml")).unwrap();
    assert_eq!(
        stack.function("myfn").unwrap().lang.as_deref(),
        Some("rust-edge")
    );

    // faas-cli build --shrinkwrap
    let context = shrinkwrap(&project.join("stack.yaml"), "myfn").unwrap();
    for file in [
        "Dockerfile",
        "template.yml",
        "Cargo.toml",
        "main/src/main.rs",
        "function/src/lib.rs",
    ] {
        assert!(
            context.join(file).is_file(),
            "{file} missing from the build context"
        );
    }

    // cargo build of that context, with edge-sdk patched to this checkout
    // (as build-function.sh does with EDGE_SDK_PATH) and the repository's
    // lock file for the same dependency versions.
    std::fs::copy(repository().join("Cargo.lock"), context.join("Cargo.lock")).unwrap();
    let target_dir = repository().join("target/function-builds");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = Command::new(cargo)
        .current_dir(&context)
        .args(["build", "--quiet", "--config"])
        .arg(format!(
            "patch.crates-io.edge-sdk.path={:?}",
            repository().join("edge-sdk")
        ))
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()
        .unwrap();
    assert!(
        build.success(),
        "cargo build of the shrinkwrapped context failed"
    );

    // Start it against a real Redis, as the deployer's environment would.
    let redis = RedisServer::start_with_password("template-secret");
    let secrets = test_support::tempdir();
    std::fs::write(secrets.join("edge-redis-password"), "template-secret\n").unwrap();
    let port = free_port();
    let hierarchy = r#"{"areaTypesIdentifiers":["city"],"hierarchy":[{"areaName":"edge","mainLocation":{"openfaas_gateway":"http://127.0.0.1:8080"},"areas":[]}]}"#;
    let _function = Function(
        Command::new(target_dir.join("debug/handler"))
            .env("EDGE_LOCATION", "edge")
            .env("EDGE_FUNCTION", "myfn")
            .env("EDGE_INFRASTRUCTURE", hierarchy)
            .env("EDGE_REDIS_URL", redis.url())
            .env("EDGE_SECRETS_DIR", &secrets)
            .env("EDGE_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::blocking::Client::new();
    let url = format!("http://127.0.0.1:{port}/");
    wait_until(Duration::from_secs(20), "the function to listen", || {
        client.get(format!("{url}_/health")).send().is_ok()
    });
    let id = uuid::Uuid::new_v4().to_string();
    let call = || {
        client
            .post(&url)
            .header("X-session", "alice")
            .header("X-session-request-id", &id)
            .body("hello")
            .send()
            .unwrap()
    };
    let first = call();
    assert_eq!(first.status(), 200);
    assert_eq!(
        first.text().unwrap(),
        "call 1 of session alice on node edge\n"
    );
    let again = call();
    assert_eq!(again.status(), 208);
    assert_eq!(
        again.text().unwrap(),
        "call 1 of session alice on node edge\n"
    );
    let anonymous = client
        .post(&url)
        .header("X-session-request-id", &id)
        .send()
        .unwrap();
    assert_eq!(anonymous.status(), 400);
    assert!(anonymous.text().unwrap().contains("X-session"));

    std::fs::remove_dir_all(&project).unwrap();
}
