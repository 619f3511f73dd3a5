//! Speech to text at the edge (thesis, Listing 6.11): `POST /` with a WAV
//! recording answers its transcript, recognised on the node itself by
//! [PocketSphinx](https://cmusphinx.github.io/), and keeps the session's
//! transcripts in order, so that a conversation (with an assistant, say)
//! can be continued wherever the session goes.
//!
//! The audio never leaves the edge node; only the text does.
//!
//! Needs `pocketsphinx_continuous` and its US English model on the node
//! (Debian/Ubuntu: `apt-get install pocketsphinx pocketsphinx-en-us`); the
//! environment variable `POCKETSPHINX` names another binary.

mod wav;

use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use edge_sdk::{Error, IntoResponse, Json, Request, Response, Session, StatusCode, blocking};

/// The session key of the transcripts, oldest first.
const HISTORY: &str = "history";

/// The recogniser run when `POCKETSPHINX` is not set.
const DEFAULT_RECOGNISER: &str = "pocketsphinx_continuous";

/// Transcribes the WAV body and appends the text to the session's history.
///
/// Answers 200 with `{"text": "…", "history": ["…", …]}`; 400 when the body
/// is not a 16-bit PCM WAV file (the message says why); 405 for methods
/// other than POST; 500 when the recogniser is not installed or fails (the
/// message says how to install it; nothing is written, and a retry with the
/// same request id runs again). An empty transcript (silence) is answered
/// but not added to the history.
#[blocking]
pub async fn handle(req: Request, session: &mut Session) -> edge_sdk::Result<Response> {
    if req.method() != "POST" {
        return Ok(error(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST a WAV recording (16-bit PCM, mono or stereo, any sample rate)",
        ));
    }
    let audio = match wav::decode(req.body()) {
        Ok(audio) => audio,
        Err(problem) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "the body is not a WAV file this function can read: {problem}; \
                     send a 16-bit PCM WAV recording, mono or stereo, any sample rate"
                ),
            ));
        }
    };
    let text = transcribe(audio).await?;

    let mut history = session.get_list(HISTORY).await?.unwrap_or_default();
    if !text.is_empty() {
        history.push(text.clone());
        session.set_list(HISTORY, &history);
    }
    Ok(Json(serde_json::json!({ "text": text, "history": history })).into_response())
}

/// Converts the audio for the model and runs the recogniser on it, on a
/// thread of its own: both take long enough to stall other calls if they
/// ran on the runtime's workers.
async fn transcribe(audio: wav::Audio) -> edge_sdk::Result<String> {
    tokio::task::spawn_blocking(move || {
        let samples = audio.to_model_format();
        let file = TemporaryFile::create(&wav::encode(&samples, wav::MODEL_SAMPLE_RATE))?;
        run_recogniser(file.path())
    })
    .await
    .map_err(|problem| Error::custom(format!("the transcription did not finish: {problem}")))?
}

/// Runs `pocketsphinx_continuous` on a 16 kHz mono WAV file; its standard
/// output is the transcript, one line per utterance.
fn run_recogniser(wav_file: &Path) -> edge_sdk::Result<String> {
    let program = std::env::var_os("POCKETSPHINX").unwrap_or_else(|| DEFAULT_RECOGNISER.into());
    let name = program.to_string_lossy().into_owned();
    let output = Command::new(&program)
        .arg("-infile")
        .arg(wav_file)
        .args(["-logfn", "/dev/null"])
        .stdin(Stdio::null())
        .output();
    let output = match output {
        Ok(output) => output,
        Err(problem) if problem.kind() == io::ErrorKind::NotFound => {
            return Err(Error::custom(format!(
                "the speech recogniser {name} is not installed on this node: install it with \
                 `apt-get install pocketsphinx pocketsphinx-en-us` (Debian, Ubuntu), or set \
                 POCKETSPHINX to its path"
            )));
        }
        Err(problem) => return Err(Error::custom(format!("cannot run {name}: {problem}"))),
    };
    if !output.status.success() {
        return Err(Error::custom(format!(
            "the speech recogniser {name} failed ({}): {} (is its model, the package \
             pocketsphinx-en-us, installed?)",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let transcript = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(transcript)
}

/// A file in the temporary folder, removed when dropped, whatever happens.
struct TemporaryFile(PathBuf);

impl TemporaryFile {
    /// Creates a new `.wav` file holding `contents` (the recogniser checks
    /// and skips the WAV header only of files with that extension).
    fn create(contents: &[u8]) -> io::Result<TemporaryFile> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        loop {
            let path = std::env::temp_dir().join(format!(
                "speech-to-text-{}-{}.wav",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            // create_new: never write into a file left by someone else.
            let mut file = match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => file,
                Err(problem) if problem.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(problem) => return Err(problem),
            };
            let temporary = TemporaryFile(path);
            file.write_all(contents)?;
            return Ok(temporary);
        }
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TemporaryFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An error answer in the SDK's JSON error shape.
fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "statusCode": status.as_u16(), "message": message });
    (status, Json(body)).into_response()
}
