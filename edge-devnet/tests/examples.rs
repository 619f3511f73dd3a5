//! The examples of `examples/` end to end: each built from its project
//! folder with `edge-devnet build`, deployed through a devnet gateway with the
//! environment and secrets the deployer gives a function (SPEC section 7),
//! and called through `/function/<name>` as a client would.

mod common;

use common::{repository, run_devnet, unique_name};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};

/// The examples, each a project folder `examples/<name>` with a stack file.
const EXAMPLES: [&str; 4] = [
    "cdn-upload",
    "cdn-download",
    "shopping-cart",
    "speech-to-text",
];

/// A cloud with one edge node below it; the functions run on the edge node.
const HIERARCHY: &str = r#"{"areaTypesIdentifiers":["cloud","city"],
 "hierarchy":[{"areaName":"cloud","areas":[{"areaName":"milan"}]}]}"#;
const NODE: &str = "milan";

/// The examples built once per test run, in place; returns the devnet folder
/// whose `images.json` records their images. Every run shares it: a build
/// replaces a binary by renaming, never rewriting one that runs.
fn built_examples() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = repository().join("target/examples-tests/images");
        for example in EXAMPLES {
            let project = repository().join("examples").join(example);
            let stack = project.join("stack.yaml");
            let output = run_devnet(&dir, &["build", "-f", &stack.display().to_string()]);
            let image = format!("edge-examples/{example}:0.1.0");
            assert!(
                String::from_utf8_lossy(&output.stdout).contains(&image),
                "{example} did not build {image}"
            );
        }
        dir
    })
}

/// A two-node devnet of its own with the examples' images, the node's
/// secrets created, stopped on drop.
struct Devnet {
    dir: PathBuf,
    state: Value,
    /// The resolved hierarchy without its passwords, as functions get it.
    infrastructure: String,
    client: reqwest::Client,
}

impl Devnet {
    async fn up() -> Devnet {
        let images = built_examples();
        let dir = images
            .parent()
            .unwrap()
            .join(format!("net-{}", unique_name()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(images.join("images.json"), dir.join("images.json")).unwrap();
        let input = dir.join("input.json");
        std::fs::write(&input, HIERARCHY).unwrap();
        // The guard first, so that a failure from here on still brings it down.
        let mut devnet = Devnet {
            dir,
            state: Value::Null,
            infrastructure: String::new(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        };
        run_devnet(&devnet.dir, &["up", &input.display().to_string()]);
        devnet.state = serde_json::from_slice(
            &run_devnet(&devnet.dir, &["status", "--format", "json"]).stdout,
        )
        .unwrap();
        let hierarchy = std::fs::read_to_string(devnet.dir.join("hierarchy.json")).unwrap();
        devnet.infrastructure =
            without_passwords(serde_json::from_str(&hierarchy).unwrap()).to_string();
        let redis_password = devnet.node()["redis_password"].as_str().unwrap();
        for (name, value) in [
            ("edge-redis-password", redis_password),
            ("edge-node-token", "examples-token"),
        ] {
            let created = devnet
                .system(reqwest::Method::POST, "/system/secrets")
                .json(&json!({"name": name, "value": value}))
                .send()
                .await
                .unwrap();
            assert_eq!(created.status(), 201, "secret {name}");
        }
        devnet
    }

    fn node(&self) -> &Value {
        self.state["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == NODE)
            .unwrap()
    }

    fn gateway(&self) -> &str {
        self.node()["gateway"].as_str().unwrap()
    }

    fn system(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.gateway()))
            .basic_auth("admin", self.node()["password"].as_str())
    }

    /// Deploys `name` from the image of `example`, with the environment of
    /// SPEC section 7 plus `extra_env`.
    async fn deploy(&self, name: &str, example: &str, extra_env: Value) {
        let mut env = json!({
            "EDGE_LOCATION": NODE,
            "EDGE_FUNCTION": name,
            "EDGE_INFRASTRUCTURE": self.infrastructure,
            "EDGE_REDIS_URL": format!("redis://127.0.0.1:{}", self.node()["redis_port"]),
        });
        env.as_object_mut()
            .unwrap()
            .extend(extra_env.as_object().unwrap().clone());
        let deployed = self
            .system(reqwest::Method::POST, "/system/functions")
            .json(&json!({
                "service": name,
                "image": format!("edge-examples/{example}:0.1.0"),
                "envVars": env,
                "secrets": ["edge-redis-password", "edge-node-token"],
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(deployed.status(), 202, "deploying {name}");
    }

    /// A call of `/function/<function><path>` in `session`, with a new
    /// request id.
    fn call(
        &self,
        method: reqwest::Method,
        function: &str,
        path: &str,
        session: &str,
    ) -> reqwest::RequestBuilder {
        let request_id = uuid::Uuid::new_v4().to_string();
        self.call_with_id(method, function, path, session, &request_id)
    }

    /// A call with the given request id.
    fn call_with_id(
        &self,
        method: reqwest::Method,
        function: &str,
        path: &str,
        session: &str,
        request_id: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(
                method,
                format!("{}/function/{function}{path}", self.gateway()),
            )
            .header("X-session", session)
            .header("X-session-request-id", request_id)
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let down = Command::new(env!("CARGO_BIN_EXE_edge-devnet"))
            .arg("--dir")
            .arg(&self.dir)
            .arg("down")
            .output();
        // The logs of a failed test stay for reading.
        if down.is_ok_and(|output| output.status.success()) && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The hierarchy as the deployer hands it to functions: no password fields.
fn without_passwords(value: Value) -> Value {
    match value {
        Value::Object(map) => map
            .into_iter()
            .filter(|(key, _)| !key.contains("password"))
            .map(|(key, value)| (key, without_passwords(value)))
            .collect(),
        Value::Array(items) => items.into_iter().map(without_passwords).collect(),
        other => other,
    }
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

async fn json_body(response: reqwest::Response) -> Value {
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdn_upload_and_download_round_trip_byte_exact_with_cors_headers() {
    let devnet = Devnet::up().await;
    devnet.deploy("cdn-upload", "cdn-upload", json!({})).await;
    devnet
        .deploy("cdn-download", "cdn-download", json!({}))
        .await;
    let video: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let file = "?file=clip%20one.mp4";

    // Upload: 200, and the same request id again is a 208 replay.
    let request_id = uuid::Uuid::new_v4().to_string();
    let upload = || {
        devnet
            .call_with_id(
                reqwest::Method::POST,
                "cdn-upload",
                file,
                "viewer",
                &request_id,
            )
            .header("content-type", "video/mp4")
            .body(video.clone())
    };
    let uploaded = upload().send().await.unwrap();
    assert_eq!(uploaded.status(), 200);
    let message = uploaded.text().await.unwrap();
    assert!(message.contains("clip one.mp4"), "{message}");
    let replayed = upload().send().await.unwrap();
    assert_eq!(replayed.status(), 208);
    assert_eq!(header(&replayed, "x-session-original-status"), "200");
    assert_eq!(replayed.text().await.unwrap(), message);

    // Download: the bytes, their content type and the CORS headers.
    let download = |query: &str, session: &str| {
        devnet
            .call(reqwest::Method::GET, "cdn-download", query, session)
            .send()
    };
    let downloaded = download(file, "viewer").await.unwrap();
    assert_eq!(downloaded.status(), 200);
    assert_eq!(header(&downloaded, "content-type"), "video/mp4");
    assert_eq!(header(&downloaded, "access-control-allow-origin"), "*");
    let allowed = header(&downloaded, "access-control-allow-headers");
    assert!(allowed.contains("X-session"), "{allowed}");
    assert_eq!(downloaded.bytes().await.unwrap(), video);

    // An upload to the same name with a new request id replaces the file.
    let replaced = devnet
        .call(reqwest::Method::POST, "cdn-upload", file, "viewer")
        .header("content-type", "text/plain")
        .body("a\0b\n\"c\"")
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), 200);
    let downloaded = download(file, "viewer").await.unwrap();
    assert_eq!(header(&downloaded, "content-type"), "text/plain");
    assert_eq!(downloaded.bytes().await.unwrap().as_ref(), b"a\0b\n\"c\"");

    // 400 without the file parameter, naming it; 404 for a file not stored.
    let no_file = devnet
        .call(reqwest::Method::POST, "cdn-upload", "", "viewer")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(no_file.status(), 400);
    assert!(
        json_body(no_file).await["message"]
            .as_str()
            .unwrap()
            .contains("'file'")
    );
    let no_file = download("?other=1", "viewer").await.unwrap();
    assert_eq!(no_file.status(), 400);
    assert_eq!(header(&no_file, "access-control-allow-origin"), "*");
    assert!(
        json_body(no_file).await["message"]
            .as_str()
            .unwrap()
            .contains("'file'")
    );
    let unknown = download("?file=missing.mp4", "viewer").await.unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(json_body(unknown).await["statusCode"], 404);
    // Files belong to the session that uploaded them.
    assert_eq!(download(file, "someone-else").await.unwrap().status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shopping_cart_adds_removes_and_lists_items() {
    let devnet = Devnet::up().await;
    devnet
        .deploy("shopping-cart", "shopping-cart", json!({}))
        .await;
    let cart =
        |method: reqwest::Method, path: &str| devnet.call(method, "shopping-cart", path, "shopper");
    let add = |body: &'static str| cart(reqwest::Method::POST, "/items").body(body).send();

    let added = add(r#"{"item":"apple","quantity":2}"#).await.unwrap();
    assert_eq!(added.status(), 201);
    assert_eq!(
        json_body(added).await,
        json!({"item": "apple", "quantity": 2})
    );
    let more = add(r#"{"item":"apple","quantity":1}"#).await.unwrap();
    assert_eq!(more.status(), 200);
    assert_eq!(json_body(more).await["quantity"], 3);
    assert_eq!(add(r#"{"item":"green pear"}"#).await.unwrap().status(), 201);

    let removed = cart(reqwest::Method::DELETE, "/items/green%20pear")
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 200);
    assert_eq!(
        json_body(removed).await,
        json!({"item": "green pear", "quantity": 1})
    );

    let listed = cart(reqwest::Method::GET, "/items").send().await.unwrap();
    assert_eq!(listed.status(), 200);
    assert_eq!(header(&listed, "content-type"), "application/json");
    let expected = json!([{"item": "apple", "quantity": 3}]);
    assert_eq!(json_body(listed).await, expected);

    // Failures answer their status and leave the cart as it was.
    let bad = add("{not json").await.unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(json_body(bad).await["statusCode"], 400);
    assert_eq!(
        add(r#"{"item":"fig","quantity":0}"#)
            .await
            .unwrap()
            .status(),
        400
    );
    let absent = cart(reqwest::Method::DELETE, "/items/kiwi")
        .send()
        .await
        .unwrap();
    assert_eq!(absent.status(), 404);
    assert!(
        json_body(absent).await["message"]
            .as_str()
            .unwrap()
            .contains("kiwi")
    );
    assert_eq!(
        cart(reqwest::Method::GET, "/elsewhere")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let listed = cart(reqwest::Method::GET, "/items").send().await.unwrap();
    assert_eq!(json_body(listed).await, expected);
}

/// Whether `program` is a file in one of the `PATH` folders.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// A mono 16-bit WAV file as espeak-ng writes it (a 44-byte header) made
/// stereo, each sample in both channels.
fn to_stereo(mono_wav: &[u8]) -> Vec<u8> {
    let (header, samples) = mono_wav.split_at(44);
    let mut stereo = header.to_vec();
    let u32_at = |offset: usize| u32::from_le_bytes(header[offset..offset + 4].try_into().unwrap());
    let u16_at = |offset: usize| u16::from_le_bytes(header[offset..offset + 2].try_into().unwrap());
    assert_eq!(
        (u16_at(22), u16_at(34)),
        (1, 16),
        "espeak-ng wrote no mono 16-bit WAV"
    );
    let data_len = (samples.len() * 2) as u32;
    stereo[4..8].copy_from_slice(&(36 + data_len).to_le_bytes());
    stereo[22..24].copy_from_slice(&2u16.to_le_bytes());
    stereo[28..32].copy_from_slice(&(u32_at(24) * 4).to_le_bytes());
    stereo[32..34].copy_from_slice(&4u16.to_le_bytes());
    stereo[40..44].copy_from_slice(&data_len.to_le_bytes());
    for sample in samples.chunks_exact(2) {
        stereo.extend_from_slice(sample);
        stereo.extend_from_slice(sample);
    }
    stereo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_to_text_transcribes_a_recording_and_keeps_the_history() {
    for program in ["espeak-ng", "pocketsphinx_continuous"] {
        if !on_path(program) {
            eprintln!(
                "SKIPPED speech-to-text: {program} is not installed \
                 (apt-get install espeak-ng pocketsphinx pocketsphinx-en-us, or scripts/ensure-deps)"
            );
            return;
        }
    }
    let devnet = Devnet::up().await;
    // The function's temporary files go to a folder of the test's own, to
    // check that none is left behind.
    let temporary = devnet.dir.join("function-tmp");
    std::fs::create_dir_all(&temporary).unwrap();
    let tmpdir = json!({"TMPDIR": temporary.display().to_string()});
    devnet
        .deploy("speech-to-text", "speech-to-text", tmpdir.clone())
        .await;
    let mut without_recogniser = tmpdir.clone();
    without_recogniser["POCKETSPHINX"] = json!("/nonexistent/pocketsphinx_continuous");
    devnet
        .deploy(
            "speech-to-text-broken",
            "speech-to-text",
            without_recogniser,
        )
        .await;

    let recording = devnet.dir.join("numbers.wav");
    let spoken = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "130", "-w"])
        .arg(&recording)
        .arg("one two three four five")
        .output()
        .unwrap();
    assert!(spoken.status.success(), "espeak-ng failed: {spoken:?}");
    let mono = std::fs::read(&recording).unwrap();
    let transcribe = |function: &str, wav: Vec<u8>| {
        devnet
            .call(reqwest::Method::POST, function, "", "speaker")
            .header("content-type", "audio/wav")
            .body(wav)
            .send()
    };

    let first = transcribe("speech-to-text", mono.clone()).await.unwrap();
    assert_eq!(first.status(), 200);
    let first = json_body(first).await;
    let text = first["text"].as_str().unwrap();
    eprintln!("pocketsphinx heard {text:?} for \"one two three four five\"");
    assert!(text.contains("three") && text.contains("four"), "{first}");
    assert_eq!(first["history"], json!([text]));

    // The same words in stereo: the same text, and the history grows.
    let second = transcribe("speech-to-text", to_stereo(&mono))
        .await
        .unwrap();
    assert_eq!(second.status(), 200);
    let second = json_body(second).await;
    assert_eq!(second["text"], text, "{second}");
    assert_eq!(second["history"], json!([text, text]));

    let not_wav = transcribe("speech-to-text", b"hello, not audio".to_vec())
        .await
        .unwrap();
    assert_eq!(not_wav.status(), 400);
    let message = json_body(not_wav).await["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("not a WAV"), "{message}");

    // Without the recogniser: a 500 that says how to install it.
    let broken = transcribe("speech-to-text-broken", mono).await.unwrap();
    assert_eq!(broken.status(), 500);
    let message = json_body(broken).await["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("apt-get install pocketsphinx"),
        "{message}"
    );

    let left: Vec<_> = std::fs::read_dir(&temporary).unwrap().collect();
    assert!(left.is_empty(), "temporary files left behind: {left:?}");
}
