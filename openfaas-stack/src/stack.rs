//! The stack file and `template.yml`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Deserializer};

use crate::{Error, Result, io_error};

/// A stack file: the provider and the functions by name.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct StackFile {
    /// The schema version (`1.0`).
    #[serde(default, deserialize_with = "scalar_string_opt")]
    pub version: Option<String>,
    /// The provider section.
    #[serde(default)]
    pub provider: Provider,
    /// The functions, by name.
    #[serde(default)]
    pub functions: BTreeMap<String, FunctionSpec>,
}

/// The `provider` section.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct Provider {
    /// `openfaas`.
    #[serde(default)]
    pub name: Option<String>,
    /// The gateway URL.
    #[serde(default)]
    pub gateway: Option<String>,
}

/// CPU and memory, as in `limits:` and `requests:`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct Resources {
    /// e.g. `128Mi`.
    #[serde(default, deserialize_with = "scalar_string_opt")]
    pub memory: Option<String>,
    /// e.g. `500m`.
    #[serde(default, deserialize_with = "scalar_string_opt")]
    pub cpu: Option<String>,
}

/// One function of a stack file, with the fields `faas-cli build` and
/// `faas-cli deploy` read.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct FunctionSpec {
    /// The template (`rust-edge`).
    #[serde(default)]
    pub lang: Option<String>,
    /// The handler folder, relative to the stack file.
    #[serde(default)]
    pub handler: Option<String>,
    /// The image reference.
    #[serde(default)]
    pub image: Option<String>,
    /// The process the watchdog starts (overrides the template's).
    #[serde(default)]
    pub fprocess: Option<String>,
    /// Environment variables; numbers and booleans are kept as written.
    #[serde(default, deserialize_with = "scalar_map")]
    pub environment: BTreeMap<String, String>,
    /// Files of further environment variables, relative to the stack file.
    #[serde(default)]
    pub environment_file: Vec<String>,
    /// Labels.
    #[serde(default, deserialize_with = "scalar_map")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, deserialize_with = "scalar_map")]
    pub annotations: BTreeMap<String, String>,
    /// Resource limits.
    #[serde(default)]
    pub limits: Option<Resources>,
    /// Resource requests.
    #[serde(default)]
    pub requests: Option<Resources>,
    /// Names of the secrets to mount.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// The namespace to deploy to.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Placement constraints.
    #[serde(default)]
    pub constraints: Vec<String>,
    /// Docker build arguments.
    #[serde(default, deserialize_with = "scalar_map")]
    pub build_args: BTreeMap<String, String>,
    /// Whether the root filesystem is read-only.
    #[serde(default)]
    pub readonly_root_filesystem: bool,
}

impl StackFile {
    /// Reads a stack file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<StackFile> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(io_error(path))?;
        parse(&text, &path.display().to_string())
    }

    /// Parses the text of a stack file.
    pub fn parse(text: &str) -> Result<StackFile> {
        parse(text, "<text>")
    }

    /// The function `name`, or an error listing the functions there are.
    pub fn function(&self, name: &str) -> Result<&FunctionSpec> {
        self.functions
            .get(name)
            .ok_or_else(|| Error::UnknownFunction {
                name: name.to_string(),
                known: self
                    .functions
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// A language template's `template.yml`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct LanguageTemplate {
    /// The language name.
    #[serde(default)]
    pub language: Option<String>,
    /// The process the watchdog starts.
    #[serde(default)]
    pub fprocess: Option<String>,
    /// What `faas-cli new` prints after creating a function.
    #[serde(default)]
    pub welcome_message: Option<String>,
    /// The template folder `faas-cli new` copies (default `function`).
    #[serde(default)]
    pub handler_folder: Option<String>,
}

impl LanguageTemplate {
    /// Reads `template.yml`.
    pub fn from_path(path: impl AsRef<Path>) -> Result<LanguageTemplate> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(io_error(path))?;
        parse(&text, &path.display().to_string())
    }

    /// The handler folder, `function` unless the template names another.
    pub fn handler_folder(&self) -> &str {
        self.handler_folder
            .as_deref()
            .filter(|f| !f.is_empty())
            .unwrap_or("function")
    }
}

pub(crate) fn parse<T: serde::de::DeserializeOwned + Default>(text: &str, file: &str) -> Result<T> {
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    serde_yaml_ng::from_str(text).map_err(|e| Error::Yaml {
        file: file.to_string(),
        message: match e.location() {
            Some(at) => format!("line {}, column {}: {e}", at.line(), at.column()),
            None => e.to_string(),
        },
    })
}

fn scalar_text(value: serde_yaml_ng::Value) -> std::result::Result<String, String> {
    use serde_yaml_ng::Value;
    match value {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        other => Err(format!("expected a string, found {other:?}")),
    }
}

fn scalar_string_opt<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    let value: Option<serde_yaml_ng::Value> = Option::deserialize(d)?;
    value
        .map(scalar_text)
        .transpose()
        .map_err(serde::de::Error::custom)
}

pub(crate) fn scalar_map<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<BTreeMap<String, String>, D::Error> {
    let map: Option<BTreeMap<String, serde_yaml_ng::Value>> = Option::deserialize(d)?;
    map.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            scalar_text(v)
                .map(|v| (k, v))
                .map_err(serde::de::Error::custom)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_faas_cli_deploy_reads() {
        let stack = StackFile::parse(
            r#"
version: 1.0
provider:
  name: openfaas
  gateway: http://127.0.0.1:8080
functions:
  cdn-upload:
    lang: rust-edge
    handler: ./cdn-upload
    image: ghcr.io/acme/cdn-upload:0.1.0
    fprocess: ./handler --fast
    environment:
      RUST_LOG: info
      max_inflight: 10
      debug: true
    environment_file: [env.yml]
    labels:
      com.openfaas.scale.min: 1
    annotations:
      topic: cron-function
      schedule: "*/1 * * * *"
    limits: { memory: 128Mi, cpu: 500m }
    requests: { memory: 64Mi }
    secrets: [edge-redis-password, edge-node-token]
    namespace: openfaas-fn
    build_args:
      EDGE_SDK_GIT: https://example.com/edge.git
"#,
        )
        .unwrap();
        assert_eq!(stack.version.as_deref(), Some("1.0"));
        assert_eq!(
            stack.provider.gateway.as_deref(),
            Some("http://127.0.0.1:8080")
        );
        let f = stack.function("cdn-upload").unwrap();
        assert_eq!(f.environment["max_inflight"], "10");
        assert_eq!(f.environment["debug"], "true");
        assert_eq!(f.labels["com.openfaas.scale.min"], "1");
        assert_eq!(f.annotations["schedule"], "*/1 * * * *");
        assert_eq!(f.limits.as_ref().unwrap().cpu.as_deref(), Some("500m"));
        assert_eq!(f.requests.as_ref().unwrap().cpu, None);
        assert_eq!(f.secrets, ["edge-redis-password", "edge-node-token"]);
        assert_eq!(f.environment_file, ["env.yml"]);
        assert_eq!(f.build_args["EDGE_SDK_GIT"], "https://example.com/edge.git");
        let missing = stack.function("nope").unwrap_err().to_string();
        assert!(missing.contains("cdn-upload"), "{missing}");
    }

    #[test]
    fn malformed_yaml_names_the_line() {
        let error = StackFile::parse("functions:\n  f:\n    secrets: {a: [}\n").unwrap_err();
        assert!(error.to_string().contains("line 3"), "{error}");
        let error = StackFile::parse("functions:\n  f:\n    environment: [1, 2]\n").unwrap_err();
        assert!(error.to_string().contains("environment"), "{error}");
    }
}
