//! Filling in omitted `mainLocation` fields (thesis A.4, SPEC §2), done by
//! `deploy` only, for every node, before the selection:
//!
//! | field | filled with |
//! |---|---|
//! | `openfaas_gateway` | `http://<address>:31112`, the address from `kubectl get nodes -o jsonpath='{.items[0].status.addresses[0].address}' --context=<areaName>` |
//! | `openfaas_password` | `autofilled-password` |
//! | `redis_host` | `my-openfaas-redis-master.openfaas-fn.svc.cluster.local` |
//! | `redis_port` | `6379` |
//! | `redis_password` | `autofilled-password` |
//!
//! `kubectl` (or the program `$KUBECTL` names) runs only when some gateway is
//! missing.
//!
//! ```
//! use deployer::autofill::{AUTOFILLED_PASSWORD, autofill};
//! use edge_sdk::hierarchy::{Area, Infrastructure, MainLocation};
//!
//! let gateway = MainLocation { openfaas_gateway: Some("http://10.0.0.5:31112".into()), ..Default::default() };
//! let infra = Infrastructure::new(["cloud"], Area::new("cloud").with_main_location(gateway))?;
//! let (filled, report) = autofill(infra, |_| unreachable!("every gateway is there"))?;
//! assert_eq!(filled.root().main_location.redis_password.as_deref(), Some(AUTOFILLED_PASSWORD));
//! assert_eq!(report.redis_ports, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::PathBuf;
use std::process::Command;

use edge_sdk::hierarchy::{Area, Infrastructure};

use crate::{Error, Result};

/// The password given to an omitted `openfaas_password` or `redis_password`.
pub const AUTOFILLED_PASSWORD: &str = "autofilled-password";
/// The host given to an omitted `redis_host`.
pub const AUTOFILLED_REDIS_HOST: &str = "my-openfaas-redis-master.openfaas-fn.svc.cluster.local";
/// The port given to an omitted `redis_port`.
pub const AUTOFILLED_REDIS_PORT: u16 = 6379;
/// The gateway port of an autofilled `openfaas_gateway` (OpenFaaS's NodePort).
pub const AUTOFILLED_GATEWAY_PORT: u16 = 31112;
/// The environment variable that overrides the `kubectl` binary.
pub const KUBECTL_VAR: &str = "KUBECTL";

/// How many fields of each kind were filled in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutofillReport {
    /// `openfaas_gateway`s found with kubectl.
    pub gateways: usize,
    /// `openfaas_password`s set to [`AUTOFILLED_PASSWORD`].
    pub openfaas_passwords: usize,
    /// `redis_host`s set to [`AUTOFILLED_REDIS_HOST`].
    pub redis_hosts: usize,
    /// `redis_port`s set to [`AUTOFILLED_REDIS_PORT`].
    pub redis_ports: usize,
    /// `redis_password`s set to [`AUTOFILLED_PASSWORD`].
    pub redis_passwords: usize,
}

impl AutofillReport {
    /// Whether nothing was filled in.
    pub fn is_empty(&self) -> bool {
        *self == AutofillReport::default()
    }

    /// e.g. `openfaas_gateway ×2 (kubectl), redis_port ×3`; empty when
    /// nothing was filled in.
    pub fn describe(&self) -> String {
        [
            ("openfaas_gateway", self.gateways, " (kubectl)"),
            ("openfaas_password", self.openfaas_passwords, ""),
            ("redis_host", self.redis_hosts, ""),
            ("redis_port", self.redis_ports, ""),
            ("redis_password", self.redis_passwords, ""),
        ]
        .iter()
        .filter(|(_, count, _)| *count > 0)
        .map(|(field, count, how)| format!("{field} ×{count}{how}"))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// Asks `kubectl` for the address of the first node of a context.
#[derive(Debug, Clone)]
pub struct Kubectl {
    program: PathBuf,
}

impl Kubectl {
    /// The `kubectl` of `$KUBECTL`, else of `PATH`; `None` if there is none.
    pub fn locate() -> Option<Kubectl> {
        crate::tool::find_program(KUBECTL_VAR, "kubectl").map(|program| Kubectl { program })
    }

    /// `kubectl get nodes -o jsonpath='{.items[0].status.addresses[0].address}' --context=<context>`,
    /// trimmed; an error message when it fails or prints nothing.
    pub fn node_address(&self, context: &str) -> std::result::Result<String, String> {
        let output = Command::new(&self.program)
            .args([
                "get",
                "nodes",
                "-o",
                "jsonpath={.items[0].status.addresses[0].address}",
                &format!("--context={context}"),
            ])
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.program.display()))?;
        let address = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let stderr = stderr.trim();
            return Err(format!(
                "kubectl --context={context} failed ({}){}",
                output.status,
                if stderr.is_empty() {
                    String::new()
                } else {
                    format!(": {stderr}")
                }
            ));
        }
        if address.is_empty() {
            return Err(format!("kubectl --context={context} printed no address"));
        }
        Ok(address)
    }
}

/// `http://<address>:31112`, with an IPv6 address in brackets.
pub fn gateway_url(address: &str) -> String {
    if address.contains(':') && !address.starts_with('[') {
        format!("http://[{address}]:{AUTOFILLED_GATEWAY_PORT}")
    } else {
        format!("http://{address}:{AUTOFILLED_GATEWAY_PORT}")
    }
}

/// Fills in every omitted `mainLocation` field and validates the result
/// again. `node_address` gives a node's gateway address from its
/// `areaName` (see [`Kubectl::node_address`]); it is called only for nodes
/// without a gateway.
///
/// Fails with [`Error::Tool`] naming every node whose address could not be
/// found, and with [`Error::Hierarchy`] if a found address makes an invalid
/// gateway URL.
pub fn autofill(
    infra: Infrastructure,
    mut node_address: impl FnMut(&str) -> std::result::Result<String, String>,
) -> Result<(Infrastructure, AutofillReport)> {
    let paths: Vec<(String, String)> = infra
        .nodes()
        .filter(|node| node.area.main_location.openfaas_gateway.is_none())
        .map(|node| {
            let name = node.name().to_owned();
            let path = infra.path_string(&name).unwrap_or_else(|| name.clone());
            (name, path)
        })
        .collect();
    let mut report = AutofillReport::default();
    let mut gateways = std::collections::HashMap::new();
    let mut failures = Vec::new();
    for (name, path) in &paths {
        match node_address(name) {
            Ok(address) => {
                gateways.insert(name.clone(), gateway_url(&address));
            }
            Err(reason) => failures.push(format!("  {path}: {reason}")),
        }
    }
    if !failures.is_empty() {
        return Err(Error::Tool(format!(
            "cannot fill in openfaas_gateway of {} node(s) with kubectl:\n{}\n\
             create the kubectl context named after each node, or write its \
             mainLocation.openfaas_gateway into the hierarchy file",
            failures.len(),
            failures.join("\n")
        )));
    }
    report.gateways = gateways.len();

    let (levels, mut root) = infra.into_parts();
    fill(&mut root, &mut gateways, &mut report);
    let filled = Infrastructure::new(levels, root).map_err(|source| Error::Hierarchy {
        file: PathBuf::from("(after autofill)"),
        source,
    })?;
    Ok((filled, report))
}

/// The paths of the nodes without `openfaas_gateway`, for messages.
pub fn nodes_without_gateway(infra: &Infrastructure) -> Vec<String> {
    infra
        .nodes()
        .filter(|node| node.area.main_location.openfaas_gateway.is_none())
        .map(|node| {
            infra
                .path_string(node.name())
                .unwrap_or_else(|| node.name().to_owned())
        })
        .collect()
}

fn fill(
    area: &mut Area,
    gateways: &mut std::collections::HashMap<String, String>,
    report: &mut AutofillReport,
) {
    let location = &mut area.main_location;
    if location.openfaas_gateway.is_none() {
        location.openfaas_gateway = gateways.remove(&area.area_name);
    }
    if location.openfaas_password.is_none() {
        location.openfaas_password = Some(AUTOFILLED_PASSWORD.to_owned());
        report.openfaas_passwords += 1;
    }
    if location.redis_host.is_none() {
        location.redis_host = Some(AUTOFILLED_REDIS_HOST.to_owned());
        report.redis_hosts += 1;
    }
    if location.redis_port.is_none() {
        location.redis_port = Some(AUTOFILLED_REDIS_PORT);
        report.redis_ports += 1;
    }
    if location.redis_password.is_none() {
        location.redis_password = Some(AUTOFILLED_PASSWORD.to_owned());
        report.redis_passwords += 1;
    }
    for child in &mut area.areas {
        fill(child, gateways, report);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_sdk::hierarchy::MainLocation;

    fn thesis_a1() -> Infrastructure {
        // Listing A.1: every mainLocation empty.
        Infrastructure::from_json(
            r#"{ "areaTypesIdentifiers": ["country", "city", "district"],
                 "hierarchy": [ { "areaName": "italy", "mainLocation": { },
                   "areas": [ { "areaName": "milan", "mainLocation": { }, "areas": [ ] },
                              { "areaName": "rome", "mainLocation": { }, "areas": [ ] } ] } ] }"#,
        )
        .unwrap()
    }

    #[test]
    fn every_omitted_field_is_filled_as_in_the_thesis() {
        let mut asked = Vec::new();
        let (filled, report) = autofill(thesis_a1(), |name| {
            asked.push(name.to_owned());
            Ok(match name {
                "italy" => "172.18.0.2".to_owned(),
                "milan" => "172.18.0.3".to_owned(),
                _ => "fd00::3".to_owned(),
            })
        })
        .unwrap();
        assert_eq!(asked, ["italy", "milan", "rome"]);
        assert_eq!(filled.gateway("italy"), Some("http://172.18.0.2:31112"));
        assert_eq!(filled.gateway("milan"), Some("http://172.18.0.3:31112"));
        assert_eq!(filled.gateway("rome"), Some("http://[fd00::3]:31112"));
        let location = &filled.node("rome").unwrap().main_location;
        assert_eq!(
            location,
            &MainLocation {
                openfaas_gateway: Some("http://[fd00::3]:31112".into()),
                openfaas_password: Some("autofilled-password".into()),
                redis_host: Some("my-openfaas-redis-master.openfaas-fn.svc.cluster.local".into()),
                redis_port: Some(6379),
                redis_password: Some("autofilled-password".into()),
            }
        );
        assert_eq!(
            report.describe(),
            "openfaas_gateway ×3 (kubectl), openfaas_password ×3, redis_host ×3, redis_port ×3, redis_password ×3"
        );
    }

    #[test]
    fn given_fields_are_kept_and_kubectl_is_not_asked() {
        let infra = Infrastructure::from_json(
            r#"{"areaTypesIdentifiers": ["cloud"], "hierarchy": [{"areaName": "cloud",
                "mainLocation": {"openfaas_gateway": "http://gw:8080", "openfaas_password": "pw",
                                 "redis_host": "r", "redis_port": 7000, "redis_password": "rp"}}]}"#,
        )
        .unwrap();
        let (filled, report) = autofill(infra.clone(), |_| panic!("kubectl asked")).unwrap();
        assert_eq!(filled, infra);
        assert!(report.is_empty());
        assert_eq!(report.describe(), "");
    }

    #[test]
    fn every_failing_context_is_named() {
        let Err(Error::Tool(message)) = autofill(thesis_a1(), |name| {
            if name == "italy" {
                Ok("10.0.0.1".into())
            } else {
                Err(format!("context {name} not found"))
            }
        }) else {
            panic!("expected a tool error")
        };
        assert!(message.contains("2 node(s)"), "{message}");
        assert!(
            message.contains("italy/milan: context milan not found"),
            "{message}"
        );
        assert!(
            message.contains("italy/rome: context rome not found"),
            "{message}"
        );
    }

    #[test]
    fn a_bad_address_is_an_invalid_gateway() {
        let Err(Error::Hierarchy { source, .. }) =
            autofill(thesis_a1(), |_| Ok("not an address".into()))
        else {
            panic!("expected a hierarchy error")
        };
        assert!(source.to_string().contains("openfaas_gateway"), "{source}");
    }
}
