//! The OpenFaaS gateway's REST types (`/system/functions`,
//! `/system/secrets`), with the JSON names of `faas-provider`, and the
//! deployment `faas-cli deploy` builds from a stack file.
//!
//! ```
//! use openfaas_stack::{FunctionDeployment, StackFile};
//!
//! let stack = StackFile::parse("functions:\n  cart:\n    image: cart:1\n    environment:\n      RUST_LOG: info\n").unwrap();
//! let deployment = FunctionDeployment::from_stack("cart", stack.function("cart").unwrap(), std::path::Path::new(".")).unwrap();
//! let json = serde_json::to_value(&deployment).unwrap();
//! assert_eq!(json["service"], "cart");
//! assert_eq!(json["envVars"]["RUST_LOG"], "info");
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::stack::{FunctionSpec, Resources};
use crate::{Error, Result, io_error};

/// CPU and memory of a deployment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FunctionResources {
    /// e.g. `128Mi`.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub memory: String,
    /// e.g. `500m`.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub cpu: String,
}

/// The body of `POST`/`PUT /system/functions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FunctionDeployment {
    /// The function's name.
    pub service: String,
    /// The image reference.
    pub image: String,
    /// The namespace, if the provider has namespaces.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub namespace: String,
    /// The watchdog's process (overrides the image's `fprocess`).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub env_process: String,
    /// Environment variables.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub env_vars: BTreeMap<String, String>,
    /// Placement constraints.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub constraints: Vec<String>,
    /// Names of the secrets to mount.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub secrets: Vec<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Resource limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<FunctionResources>,
    /// Resource requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<FunctionResources>,
    /// Read-only root filesystem.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only_root_filesystem: bool,
}

/// An element of `GET /system/functions` (and `GET /system/function/{name}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStatus {
    /// The function's name.
    pub name: String,
    /// The image reference.
    pub image: String,
    /// The namespace.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub namespace: String,
    /// The watchdog's process.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub env_process: String,
    /// Environment variables.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub env_vars: BTreeMap<String, String>,
    /// Secrets mounted.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub secrets: Vec<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Invocations so far.
    #[serde(default)]
    pub invocation_count: f64,
    /// Desired replicas.
    #[serde(default)]
    pub replicas: u64,
    /// Ready replicas.
    #[serde(default)]
    pub available_replicas: u64,
    /// Creation time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

/// The body of `POST`/`PUT`/`DELETE /system/secrets` (and an element of
/// `GET /system/secrets`, without values).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    /// The secret's name.
    pub name: String,
    /// The namespace.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub namespace: String,
    /// The value as text.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub value: String,
    /// The value as bytes (base64 in JSON, as Go encodes `[]byte`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_value: Option<String>,
}

/// The body of `DELETE /system/functions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeleteFunctionRequest {
    /// The function to delete.
    pub function_name: String,
    /// Its namespace.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub namespace: String,
}

/// Go encodes nil maps and slices as `null` (older faas-cli sends
/// `"envVars": null`): read `null` as the empty value.
fn null_as_default<'de, D, T>(deserializer: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

impl FunctionDeployment {
    /// The deployment `faas-cli deploy` sends for function `name` of a
    /// stack file in `stack_dir`: image, fprocess, environment (with the
    /// `environment_file`s read, the stack's own `environment` winning),
    /// labels, annotations, limits, requests, secrets, constraints,
    /// namespace.
    pub fn from_stack(
        name: &str,
        spec: &FunctionSpec,
        stack_dir: &Path,
    ) -> Result<FunctionDeployment> {
        let image = spec.image.clone().ok_or(Error::MissingField {
            function: name.to_string(),
            field: "image",
        })?;
        let mut env_vars = BTreeMap::new();
        for file in &spec.environment_file {
            let path = stack_dir.join(file);
            let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
            env_vars.extend(environment_file(&text, &path.display().to_string())?);
        }
        env_vars.extend(spec.environment.clone());
        let resources = |r: &Option<Resources>| {
            r.as_ref().map(|r| FunctionResources {
                memory: r.memory.clone().unwrap_or_default(),
                cpu: r.cpu.clone().unwrap_or_default(),
            })
        };
        let non_empty = |m: &BTreeMap<String, String>| (!m.is_empty()).then(|| m.clone());
        Ok(FunctionDeployment {
            service: name.to_string(),
            image,
            namespace: spec.namespace.clone().unwrap_or_default(),
            env_process: spec.fprocess.clone().unwrap_or_default(),
            env_vars,
            constraints: spec.constraints.clone(),
            secrets: spec.secrets.clone(),
            labels: non_empty(&spec.labels),
            annotations: non_empty(&spec.annotations),
            limits: resources(&spec.limits),
            requests: resources(&spec.requests),
            read_only_root_filesystem: spec.readonly_root_filesystem,
        })
    }
}

/// An `environment_file`: YAML with an `environment:` map, as faas-cli
/// reads it.
fn environment_file(text: &str, file: &str) -> Result<BTreeMap<String, String>> {
    #[derive(Deserialize, Default)]
    struct EnvironmentFile {
        #[serde(default, deserialize_with = "crate::stack::scalar_map")]
        environment: BTreeMap<String, String>,
    }
    let parsed: EnvironmentFile = crate::stack::parse(text, file)?;
    Ok(parsed.environment)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StackFile;

    #[test]
    fn a_deployment_has_every_field_faas_cli_sends() {
        let dir = std::env::temp_dir().join(format!("gateway-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("env.yml"),
            "environment:\n  FROM_FILE: yes\n  SHARED: file\n",
        )
        .unwrap();
        let stack = StackFile::parse(
            "functions:\n  f:\n    image: f:1\n    fprocess: ./handler\n    namespace: fn\n    \
             environment: {SHARED: stack, N: 3}\n    environment_file: [env.yml]\n    \
             labels: {a: b}\n    annotations: {topic: cron-function}\n    limits: {memory: 40Mi, cpu: 100m}\n    \
             secrets: [s1]\n    constraints: [\"node.platform.os == linux\"]\n    readonly_root_filesystem: true\n",
        )
        .unwrap();
        let d = FunctionDeployment::from_stack("f", stack.function("f").unwrap(), &dir).unwrap();
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "service": "f", "image": "f:1", "namespace": "fn", "envProcess": "./handler",
                "envVars": {"FROM_FILE": "yes", "SHARED": "stack", "N": "3"},
                "constraints": ["node.platform.os == linux"], "secrets": ["s1"],
                "labels": {"a": "b"}, "annotations": {"topic": "cron-function"},
                "limits": {"memory": "40Mi", "cpu": "100m"}, "readOnlyRootFilesystem": true
            })
        );
        let back: FunctionDeployment = serde_json::from_value(json).unwrap();
        assert_eq!(back, d);
        // As older faas-cli sends it: nil maps and slices as null, extra fields.
        let faas_cli: FunctionDeployment = serde_json::from_str(
            r#"{"service":"f","image":"f:1","network":"func_functions","envProcess":"","envVars":null,
                "constraints":null,"secrets":null,"labels":null,"annotations":null,"limits":null,"requests":null}"#,
        )
        .unwrap();
        assert_eq!(faas_cli.service, "f");
        assert!(
            faas_cli.env_vars.is_empty()
                && faas_cli.secrets.is_empty()
                && faas_cli.labels.is_none()
        );
        let missing = StackFile::parse("functions:\n  g:\n    lang: x\n").unwrap();
        assert!(FunctionDeployment::from_stack("g", missing.function("g").unwrap(), &dir).is_err());
    }
}
