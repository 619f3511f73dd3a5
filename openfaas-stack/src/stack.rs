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

    /// Reads a stack file after substituting `${VAR}` references in its
    /// text, as `faas-cli` does by default (its `--envsubst`), with values
    /// from `lookup` — usually `|name| std::env::var(name).ok()`. See
    /// [`StackFile::substitute_env`] for the forms understood.
    ///
    /// ```no_run
    /// let stack = openfaas_stack::StackFile::from_path_with_env("stack.yaml", |name| {
    ///     std::env::var(name).ok()
    /// })?;
    /// # Ok::<(), openfaas_stack::Error>(())
    /// ```
    pub fn from_path_with_env(
        path: impl AsRef<Path>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<StackFile> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(io_error(path))?;
        parse(
            &Self::substitute_env(&text, lookup),
            &path.display().to_string(),
        )
    }

    /// Parses the text of a stack file.
    pub fn parse(text: &str) -> Result<StackFile> {
        parse(text, "<text>")
    }

    /// Parses the text of a stack file after substituting `${VAR}`
    /// references with values from `lookup` (see [`StackFile::substitute_env`]).
    pub fn parse_with_env(
        text: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<StackFile> {
        parse(&Self::substitute_env(text, lookup), "<text>")
    }

    /// Substitutes environment references in the text of a stack file, the
    /// way `faas-cli` does before parsing it:
    ///
    /// - `${VAR}`: the value of `VAR`, empty when it is unset;
    /// - `${VAR:-default}`: `default` when `VAR` is unset or empty;
    /// - `${VAR-default}`: `default` when `VAR` is unset;
    /// - `$${` is an escape for a literal `${`.
    ///
    /// A `$` not followed by `{`, and a `${` without its closing `}` or whose
    /// name is not a variable name (letters, digits, `_`, not starting with a
    /// digit), are left as written.
    ///
    /// ```
    /// use openfaas_stack::StackFile;
    ///
    /// let lookup = |name: &str| (name == "TAG").then(|| "1.2".to_string());
    /// assert_eq!(StackFile::substitute_env("image: cart:${TAG}", lookup), "image: cart:1.2");
    /// assert_eq!(StackFile::substitute_env("replicas: ${N:-3}", lookup), "replicas: 3");
    /// assert_eq!(StackFile::substitute_env("cost: $5 and $${TAG}", lookup), "cost: $5 and ${TAG}");
    /// ```
    pub fn substitute_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(dollar) = rest.find('$') {
            out.push_str(&rest[..dollar]);
            let after = &rest[dollar + 1..];
            if let Some(escaped) = after.strip_prefix("${") {
                out.push_str("${");
                rest = escaped;
                continue;
            }
            let Some(body_and_rest) = after.strip_prefix('{') else {
                out.push('$');
                rest = after;
                continue;
            };
            match body_and_rest
                .find('}')
                .and_then(|end| expand_reference(&body_and_rest[..end], &lookup).map(|v| (end, v)))
            {
                Some((end, value)) => {
                    out.push_str(&value);
                    rest = &body_and_rest[end + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
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

/// The value of one `${…}` body, or `None` when it is not a reference.
fn expand_reference(body: &str, lookup: &impl Fn(&str) -> Option<String>) -> Option<String> {
    let name_end = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    let name = &body[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let operator = &body[name_end..];
    let value = lookup(name);
    if operator.is_empty() {
        Some(value.unwrap_or_default())
    } else if let Some(default) = operator.strip_prefix(":-") {
        Some(
            value
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_string()),
        )
    } else {
        operator
            .strip_prefix('-')
            .map(|default| value.unwrap_or_else(|| default.to_string()))
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

    fn lookup(name: &str) -> Option<String> {
        match name {
            "TAG" => Some("1.2.3".to_string()),
            "EMPTY" => Some(String::new()),
            "REGISTRY" => Some("ghcr.io/acme".to_string()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_braced_references() {
        assert_eq!(StackFile::substitute_env("${TAG}", lookup), "1.2.3");
        assert_eq!(
            StackFile::substitute_env("image: ${REGISTRY}/cart:${TAG}\n", lookup),
            "image: ghcr.io/acme/cart:1.2.3\n"
        );
        assert_eq!(StackFile::substitute_env("a${UNSET}b", lookup), "ab");
        assert_eq!(StackFile::substitute_env("a${EMPTY}b", lookup), "ab");
    }

    #[test]
    fn defaults_apply_to_unset_and_for_colon_dash_to_empty() {
        assert_eq!(
            StackFile::substitute_env("${UNSET:-latest}", lookup),
            "latest"
        );
        assert_eq!(
            StackFile::substitute_env("${EMPTY:-latest}", lookup),
            "latest"
        );
        assert_eq!(StackFile::substitute_env("${TAG:-latest}", lookup), "1.2.3");
        assert_eq!(
            StackFile::substitute_env("${UNSET-latest}", lookup),
            "latest"
        );
        assert_eq!(StackFile::substitute_env("${EMPTY-latest}", lookup), "");
        assert_eq!(StackFile::substitute_env("${UNSET:-}", lookup), "");
        assert_eq!(
            StackFile::substitute_env("${UNSET:-http://gw:8080/x}", lookup),
            "http://gw:8080/x"
        );
    }

    #[test]
    fn leaves_what_is_not_a_reference_alone() {
        for text in [
            "$",
            "cost: $5",
            "$TAG",
            "${",
            "${TAG",
            "${}",
            "${1ABC}",
            "${TAG:?err}",
            "${TAG/x/y}",
            "fprocess: sh -c 'echo $HOME'",
        ] {
            assert_eq!(StackFile::substitute_env(text, lookup), text, "{text}");
        }
        assert_eq!(StackFile::substitute_env("$${TAG}", lookup), "${TAG}");
        assert_eq!(StackFile::substitute_env("${TAG}$", lookup), "1.2.3$");
        assert_eq!(StackFile::substitute_env("é${TAG}ü", lookup), "é1.2.3ü");
    }

    #[test]
    fn stack_files_are_read_with_substitution() {
        let text = "functions:\n  cart:\n    image: ${REGISTRY}/cart:${TAG:-latest}\n    \
                    environment:\n      LEVEL: ${LOG_LEVEL:-info}\n";
        let stack = StackFile::parse_with_env(text, lookup).unwrap();
        let cart = stack.function("cart").unwrap();
        assert_eq!(cart.image.as_deref(), Some("ghcr.io/acme/cart:1.2.3"));
        assert_eq!(cart.environment["LEVEL"], "info");
        // Without substitution the references stay as written.
        let raw = StackFile::parse(text).unwrap();
        assert_eq!(
            raw.function("cart").unwrap().image.as_deref(),
            Some("${REGISTRY}/cart:${TAG:-latest}")
        );

        let dir = std::env::temp_dir().join(format!("stack-env-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stack.yaml");
        std::fs::write(&path, text).unwrap();
        let from_file = StackFile::from_path_with_env(&path, lookup).unwrap();
        assert_eq!(from_file, stack);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn malformed_yaml_names_the_line() {
        let error = StackFile::parse("functions:\n  f:\n    secrets: {a: [}\n").unwrap_err();
        assert!(error.to_string().contains("line 3"), "{error}");
        let error = StackFile::parse("functions:\n  f:\n    environment: [1, 2]\n").unwrap_err();
        assert!(error.to_string().contains("environment"), "{error}");
    }
}
